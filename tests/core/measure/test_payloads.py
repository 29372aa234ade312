"""Payloads and scenarios come from the spec: a user's models.toml (a temp dir) gets payloads with no code change; the
repository's own spec keeps the reference scenarios. No Locust import here: it would monkey-patch the test process
(the tasks Locust sees are checked in test_locustfile_tasks.py)."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.spec import load_spec
from core.measure import payloads, v2
from tests.conftest import REFERENCE_MIX, exported_repository
from tests.loadtest.user_spec import churn, heldout_arrays, text_model, write_user_spec

REPO_SPEC = payloads.DEFAULT_SPEC


@pytest.fixture
def user_catalogue(tmp_path):
    return payloads.targets(load_spec(write_user_spec(tmp_path)))


def by_name(catalogue, name):
    return next(t for t in catalogue if t.name == name)


# ---- a user's spec -----------------------------------------------------------------------------------------------

def test_every_triton_name_of_a_user_spec_is_a_target_and_variants_are_out_of_the_mix(user_catalogue):
    assert [(t.name, t.weight) for t in user_catalogue] == [("churn", 4), ("churn_fp16", 0), ("notes", 1), ("bare", 1)]
    assert by_name(user_catalogue, "churn_fp16").model.name == "churn"


def test_a_multi_input_model_gets_one_request_per_heldout_row_with_every_input_and_every_output(user_catalogue):
    samples = payloads.samples(by_name(user_catalogue, "churn"))
    expected = heldout_arrays()

    assert len(samples) == len(expected["y"])
    for i, sample in enumerate(samples):
        inputs = {t.name: t for t in sample.inputs}
        assert [t.name for t in sample.inputs] == ["features", "plan_ids"]
        assert inputs["features"].datatype == "FP32" and inputs["features"].array.dtype == np.float32
        assert inputs["plan_ids"].datatype == "INT64" and inputs["plan_ids"].array.shape == (1, 2)
        np.testing.assert_allclose(inputs["features"].array[0], expected["features"][i], rtol=1e-6)
        np.testing.assert_array_equal(inputs["plan_ids"].array[0], expected["plan_ids"][i])
        assert sample.outputs == ("churn_probability", "spend")


def test_a_variant_sends_its_base_models_heldout_rows_to_its_own_triton_name(user_catalogue):
    base = payloads.samples(by_name(user_catalogue, "churn"))
    variant = payloads.samples(by_name(user_catalogue, "churn_fp16"))

    assert {s.model for s in variant} == {"churn_fp16"}
    np.testing.assert_array_equal(variant[3].inputs[1].array, base[3].inputs[1].array)
    assert v2.http_request(variant[0], "binary").path == "/v2/models/churn_fp16/infer"


def test_a_text_samples_file_gives_one_utf8_request_per_non_empty_line(user_catalogue):
    samples = payloads.samples(by_name(user_catalogue, "notes"))

    assert [s.inputs[0].array[0, 0] for s in samples] == [b"great service", b"too pricey"]
    assert samples[0].inputs[0].datatype == "BYTES" and samples[0].outputs == ("length",)


def test_a_samples_folder_gives_each_files_bytes_as_one_request(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    for name, data in (("b.bin", b"\x00\xff second"), ("a.bin", b"first"), (".hidden", b"not a sample")):
        (folder / name).write_bytes(data)
    spec = load_spec(write_user_spec(tmp_path, *with_samples("uploads")))  # relative to models.toml

    samples = payloads.samples(by_name(payloads.targets(spec), "notes"))

    assert [s.inputs[0].array[0, 0] for s in samples] == [b"first", b"\x00\xff second"]


def with_samples(samples: str | Path) -> tuple[dict, ...]:
    """The user models with `notes` load-testing on `samples` (a folder of files)."""
    return churn(), text_model("notes", samples=samples), text_model("bare")


def test_a_models_share_is_its_weight_in_the_mix_and_at_least_one_when_picked_by_tag(user_catalogue):
    shares = {t.name: (payloads.share(t, tagged=False), payloads.share(t, tagged=True)) for t in user_catalogue}

    assert shares == {"churn": (4, 4), "churn_fp16": (0, 1), "notes": (1, 1), "bare": (1, 1)}


def test_the_mixed_scenario_skips_a_model_without_payloads_with_a_note(user_catalogue):
    selected, notes = payloads.select(user_catalogue, tags=None)

    assert [t.name for t in selected] == ["churn", "notes"]
    assert len(notes) == 1 and notes[0].startswith("bare skipped:") and "`samples`" in notes[0]


def test_tagging_a_model_without_payloads_is_an_error_naming_the_fields_to_add(user_catalogue):
    with pytest.raises(payloads.ScenarioError, match=r"'bare' has no load-test payloads: add `heldout`.*`samples`"):
        payloads.select(user_catalogue, tags=["bare"])


def test_a_tag_that_names_no_served_model_is_an_error_listing_the_served_ones(user_catalogue):
    with pytest.raises(payloads.ScenarioError, match=r"--tags churn_int8: no served model.*churn, churn_fp16, notes"):
        payloads.select(user_catalogue, tags=["churn", "churn_int8"])


def test_tags_select_variants_and_exclude_tags_drop_models_from_the_mix(user_catalogue):
    assert [t.name for t in payloads.select(user_catalogue, ["churn_fp16"])[0]] == ["churn_fp16"]
    assert [t.name for t in payloads.select(user_catalogue, None, ["churn"])[0]] == ["notes"]


def test_a_mix_with_no_weight_is_an_error_that_says_how_to_fix_it(tmp_path):
    unweighted = churn(loadtest_weight=0), text_model("notes", samples="notes.txt", loadtest_weight=0)
    catalogue = payloads.targets(load_spec(write_user_spec(tmp_path, *unweighted, text_model("bare"))))

    with pytest.raises(payloads.ScenarioError, match="loadtest_weight > 0.*--tags"):
        payloads.select(catalogue, None)


def test_a_missing_heldout_file_names_the_field_the_path_and_make_export(tmp_path, user_catalogue):
    (tmp_path / "heldout.npz").unlink()

    with pytest.raises(payloads.PayloadUnavailable, match=r"churn: models.toml field `heldout` .*heldout.npz.*"
                                                          r"make export"):
        payloads.samples(by_name(user_catalogue, "churn"))


def test_a_heldout_file_without_an_array_per_input_says_which_are_missing(tmp_path, user_catalogue):
    np.savez(tmp_path / "heldout.npz", features=np.zeros((4, 3)), y=np.zeros(4))

    with pytest.raises(payloads.PayloadUnavailable, match="field `heldout`.*missing plan_ids"):
        payloads.samples(by_name(user_catalogue, "churn"))


def test_an_empty_samples_file_is_unavailable_not_an_empty_scenario(tmp_path):
    catalogue = payloads.targets(load_spec(write_user_spec(tmp_path, notes=("", "  "))))

    with pytest.raises(payloads.PayloadUnavailable, match="field `samples`.*holds no samples"):
        payloads.samples(by_name(catalogue, "notes"))


def test_the_spec_path_comes_from_the_command_line_then_the_environment_then_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv(payloads.SPEC_ENV, raising=False)
    assert payloads.spec_path(["--tags", "digits"]) == REPO_SPEC
    monkeypatch.setenv(payloads.SPEC_ENV, str(tmp_path / "env.toml"))
    assert payloads.spec_path([]) == tmp_path / "env.toml"
    assert payloads.spec_path(["TritonHttpUser", "--spec", str(tmp_path / "cli.toml")]) == tmp_path / "cli.toml"


# ---- requests and response checks ----------------------------------------------------------------------------------

def test_a_multi_input_binary_request_carries_every_input_and_asks_for_every_output(user_catalogue):
    sample = payloads.samples(by_name(user_catalogue, "churn"))[0]

    request = v2.http_request(sample, "binary")

    header_length = int(request.headers[v2.HEADER_LENGTH])
    header = json.loads(request.body[:header_length])
    assert [(i["name"], i["datatype"], i["shape"]) for i in header["inputs"]] == [
        ("features", "FP32", [1, 3]), ("plan_ids", "INT64", [1, 2])]
    assert [o["name"] for o in header["outputs"]] == ["churn_probability", "spend"]
    assert request.body[header_length:] == sample.inputs[0].array.tobytes() + sample.inputs[1].array.tobytes()


def test_json_requests_are_plain_json_but_non_utf8_bytes_stay_binary_since_json_cannot_carry_them(tmp_path):
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    folder_spec = load_spec(write_user_spec(tmp_path / "folder", *with_samples(tmp_path / "uploads")))
    text_spec = load_spec(write_user_spec(tmp_path / "text"))

    text = v2.http_request(payloads.samples(by_name(payloads.targets(text_spec), "notes"))[0], "json")
    image = v2.http_request(payloads.samples(by_name(payloads.targets(folder_spec), "notes"))[0], "json")

    assert text.headers["Content-Type"] == "application/json"
    assert json.loads(text.body)["inputs"][0]["data"] == ["great service"]
    assert v2.HEADER_LENGTH in image.headers


def _binary_response(outputs: dict[str, np.ndarray]) -> tuple[bytes, dict]:
    header, data = {"model_name": "churn", "outputs": []}, b""
    for name, array in outputs.items():
        header["outputs"].append({"name": name, "datatype": "FP32", "shape": list(array.shape),
                                  "parameters": {"binary_data_size": array.nbytes}})
        data += array.tobytes()
    text = json.dumps(header).encode()
    return text + data, {v2.HEADER_LENGTH: str(len(text))}


def test_a_response_with_every_requested_output_for_every_row_passes_the_check(user_catalogue):
    request = v2.http_request(payloads.samples(by_name(user_catalogue, "churn"))[0], "binary")
    body, headers = _binary_response({"churn_probability": np.full((1, 2), 0.5, np.float32),
                                      "spend": np.ones((1, 1), np.float32)})

    assert v2.response_error(200, body, headers, request) is None


def test_a_missing_output_a_wrong_row_count_or_an_error_status_is_a_failure_saying_why(user_catalogue):
    request = v2.http_request(payloads.samples(by_name(user_catalogue, "churn"))[0], "binary")
    one_output, headers = _binary_response({"churn_probability": np.full((1, 2), 0.5, np.float32)})
    two_rows, headers2 = _binary_response({"churn_probability": np.full((2, 2), 0.5, np.float32),
                                           "spend": np.ones((2, 1), np.float32)})

    assert "output 'spend' expected 1 finite rows, got None" in v2.response_error(200, one_output, headers, request)
    assert "'churn_probability' expected 1 finite rows, got [2, 2]" in v2.response_error(200, two_rows, headers2,
                                                                                          request)
    assert "HTTP 400" in v2.response_error(400, b'{"error":"bad input"}', {}, request)
    assert "bad input" in v2.response_error(400, b'{"error":"bad input"}', {}, request)


def test_non_finite_numbers_fail_the_check_but_integer_and_bytes_outputs_only_need_their_rows():
    assert "finite" in v2.outputs_error("m", {"p": np.array([[np.nan]], np.float32)}, 1)
    assert v2.outputs_error("m", {"ids": np.array([[3]], np.int64), "t": np.array([[b"x"]], object)}, 1) is None


def test_requests_ask_for_uncompressed_responses_like_the_python_client(user_catalogue):
    # FastHttpUser would otherwise send Accept-Encoding: gzip and Triton would spend CPU compressing every answer
    request = v2.http_request(payloads.samples(by_name(user_catalogue, "churn"))[0], "json")

    assert request.headers["Accept-Encoding"] == "identity"


# ---- the repository's own spec: the reference scenarios -------------------------------------------------------------

def test_the_reference_mix_is_digits_5_digits_image_2_sentiment_3_from_the_spec():
    targets = payloads.targets(load_spec(REPO_SPEC))
    selected, _notes = payloads.select(targets, None)

    assert {t.name: t.weight for t in selected if t.name in REFERENCE_MIX} == REFERENCE_MIX
    # any other model in the mix is one the spec weighs (a user's own), with that weight
    assert [(t.name, t.weight) for t in selected] == [(t.name, t.weight) for t in targets if t.weight > 0]


_REPO = load_spec(REPO_SPEC)


def test_digits_payloads_are_its_heldout_rows_in_the_serving_scale():
    exported_repository(_REPO.model("digits").source.onnx.heldout)
    samples = payloads.samples(by_name(payloads.targets(_REPO), "digits"), 16)

    assert len(samples) == 16
    assert all(s.inputs[0].array.shape == (1, 8, 8, 1) and s.inputs[0].array.dtype == np.float32 for s in samples)
    assert max(float(s.inputs[0].array.max()) for s in samples) > 200  # 0..255, not sklearn's 0..16


def test_digits_image_payloads_are_the_png_files_the_trainer_wrote_several_sizes_half_dark_ink_on_light_paper():
    exported_repository(_REPO.model("digits_image").loadtest.samples)
    samples = payloads.samples(by_name(payloads.targets(_REPO), "digits_image"), 8)
    pictures = [Image.open(io.BytesIO(s.inputs[0].array[0, 0])) for s in samples]

    assert {p.format for p in pictures} == {"PNG"}
    assert len({p.size[0] for p in pictures}) >= 3
    corners = [np.asarray(p)[0, 0] for p in pictures]  # digits have an empty border: paper colour
    assert corners[0] < 128 and corners[1] > 128


def test_sentiment_payloads_are_real_utf8_sentences_of_varied_length():
    exported_repository(_REPO.model("sentiment").loadtest.samples)
    texts = [s.inputs[0].array[0, 0].decode("utf-8") for s in payloads.samples(by_name(payloads.targets(_REPO),
                                                                                        "sentiment"), 64)]

    lengths = sorted(len(t.split()) for t in texts)
    assert len(texts) == 64
    assert lengths[0] <= 5 and lengths[-1] >= 20
