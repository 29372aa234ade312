"""The gateway's parts without a server: body checks, input checks, keys, token buckets, shedding, drift, schemas."""

from __future__ import annotations

import asyncio
import json
import math
import stat

import numpy as np
import pytest

from core.measure import payloads
from core.spec import load_spec
from export.card import reference_predictions as card_reference
from core.repository import served_names
from gateway import bodies, inputs, keys, problems
from gateway import cli as gateway_cli
from gateway.catalogue import Endpoint, endpoints
from gateway.options import GatewayOptions, Limits, OptionsError, RateLimit, Shedding
from gateway.quality import DriftMonitor, psi, reference_predictions
from gateway.ratelimit import RateLimiter
from gateway.shedding import ModelGate
from tests import specs
from tests.conftest import REPOSITORY, exported_repository

SPEC = load_spec(payloads.DEFAULT_SPEC)
BY_NAME = {e.name: e for e in endpoints(SPEC, REPOSITORY)}
LIMITS = Limits()


# ---- bodies --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "depth"), [
    ('{"inputs": [[1, 2], [3]]}', 3), ("[]", 1), ('"[[[["', 0), ('{"a": "\\"[[[", "b": [{}]}', 3), ("1", 0),
])
def test_json_depth_counts_arrays_and_objects_not_brackets_in_strings(text, depth):
    assert bodies.json_depth(json.loads(text), limit=32) == depth


def test_json_depth_stops_one_level_past_the_limit():
    deep: list = []
    for _ in range(500):
        deep = [deep, 1]
    assert bodies.json_depth(deep, limit=32) == 33


@pytest.mark.parametrize(("body", "phrase"), [
    (b"[" * 33 + b"]" * 33, "nested more than 32 levels deep; this gateway accepts at most 32"),
    (b"[" * 200_000 + b"]" * 200_000, "nested more than 1024 levels deep"),
])
def test_a_body_nested_too_deep_is_a_400(body, phrase):
    with pytest.raises(problems.MalformedBody, match=phrase):
        bodies.parse_json(body, LIMITS)


@pytest.mark.parametrize(("body", "phrase"), [
    (b'{"a": NaN}', "line 1, column 7"), (b"{'a': 1}", "line 1, column 2"), (b"\xc3\x28", "not UTF-8: byte 0"),
    (b'["\\ud800 half"]', "surrogate"),
])
def test_bodies_that_are_not_utf8_json_say_where(body, phrase):
    with pytest.raises(problems.MalformedBody, match=phrase):
        bodies.parse_json(body, LIMITS)


# ---- inputs --------------------------------------------------------------------------------------------------------

def test_texts_become_one_utf8_string_per_item():
    parsed = inputs.from_json(BY_NAME["sentiment"], {"inputs": ["é", {"b64": "AAE="}], "top": 1})
    assert parsed.arrays["text"].shape == (2, 1) and parsed.arrays["text"][:, 0].tolist() == ["é".encode(), b"\0\1"]
    assert (parsed.items, parsed.top) == (2, 1)


def test_tensors_become_float32_batches_of_the_spec_dims():
    parsed = inputs.from_json(BY_NAME["digits"], {"inputs": {"image": [[[[1]] * 8] * 8] * 2}})
    assert parsed.arrays["image"].shape == (2, 8, 8, 1) and parsed.arrays["image"].dtype == np.float32


@pytest.mark.parametrize(("model", "document", "field", "phrase"), [
    ("digits", {"inputs": {"image": [[[[1]] * 8] * 7]}}, "/inputs/image/0", "a list of 7"),
    ("digits", {"inputs": {"image": [[[[True]] * 8] * 8]}}, "/inputs/image/0/0/0/0", "got a boolean"),
    ("sentiment_classifier", {"inputs": [[-1] * 63 + [2 ** 63]]}, "/inputs", "integers out of range"),
    ("sentiment", {"inputs": []}, "/inputs", "no items"),
    ("sentiment", {"top": 2}, "/inputs", "no `inputs`"),
    ("sentiment", {"inputs": {"text": ["a"], "other": ["b"]}}, "/inputs/other", "unknown input 'other'"),
])
def test_wrong_inputs_name_the_field(model, document, field, phrase):
    with pytest.raises(problems.InvalidInput) as refused:
        inputs.from_json(BY_NAME[model], document)
    assert refused.value.field == field and phrase in refused.value.detail and refused.value.fix


# ---- catalogue -----------------------------------------------------------------------------------------------------

def test_every_model_the_repository_serves_has_an_endpoint_and_schemas():
    served = [n for m in SPEC.models for n in served_names(m, REPOSITORY)]
    exported_repository(*(REPOSITORY / n / "config.pbtxt" for n in served))
    assert list(BY_NAME) == served and {"digits", "digits_image", "sentiment"} <= set(served)
    for endpoint in BY_NAME.values():
        json.dumps(endpoint.request_schema()), json.dumps(endpoint.response_schema())
    assert BY_NAME["sentiment"].flat and BY_NAME["digits_image"].takes_files
    assert not BY_NAME["digits_image_decode"].flat and not BY_NAME["digits"].takes_files


def test_a_request_takes_up_to_max_batch_size_items_and_one_more_is_refused_naming_the_limit(tmp_path):
    (model,) = specs.load(tmp_path, specs.model("pairs", max_batch_size=3)).models
    endpoint = Endpoint("pairs", model)

    assert inputs.from_json(endpoint, {"inputs": [[0.5, 1.5]] * 3}).arrays["x"].shape == (3, 2)
    with pytest.raises(problems.InvalidInput) as refused:
        inputs.from_json(endpoint, {"inputs": [[0.5, 1.5]] * 4})
    assert refused.value.field == "/inputs" and "4 items in one request; it takes at most 3" in refused.value.detail
    assert "at most 3 items" in refused.value.fix
    schema = endpoint.request_schema()["properties"]["inputs"]["oneOf"][0]
    assert schema["maxItems"] == 3 and endpoint.describe()["max_items"] == 3


def test_an_ensemble_takes_the_reference_of_the_step_that_produces_its_output():
    assert reference_predictions(SPEC, REPOSITORY, "sentiment") == \
        reference_predictions(SPEC, REPOSITORY, "sentiment_classifier")
    assert set(reference_predictions(SPEC, REPOSITORY, "digits_image")["probabilities"]) == set(map(str, range(10)))
    assert reference_predictions(SPEC, REPOSITORY, "sentiment_tokenizer") == {}


def test_the_card_records_the_share_of_each_top1_label():
    model = SPEC.model("sentiment_classifier")
    outputs = {"probabilities": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])}
    assert card_reference(model, outputs) == {"probabilities": {"samples": 4,
                                                               "shares": {"negative": 0.75, "positive": 0.25}}}


# ---- keys, rate limits, shedding, drift ----------------------------------------------------------------------------

def test_keys_are_stored_as_digests_and_a_first_start_generates_one(tmp_path):
    options = GatewayOptions(keys_file=tmp_path / "keys.json", state_dir=tmp_path)
    store, note = keys.resolve(options, environ={})
    key = (tmp_path / "api.key").read_text().strip()
    assert store.authenticate(key) is not None and store.authenticate(key + "x") is None
    assert key not in (tmp_path / "keys.json").read_text() and keys.digest(key) in (tmp_path / "keys.json").read_text()
    assert stat.S_IMODE((tmp_path / "api.key").stat().st_mode) == 0o600 and "generated" in note
    again, _ = keys.resolve(options, environ={"MODELPORT_API_KEY": "from-env"})
    assert len(again) == 2 and again.authenticate("from-env").id == "env"
    assert not (tmp_path / "keys.json").with_name("api.key.1").exists()


def test_a_keys_file_entry_with_a_wrong_field_fails_naming_it(tmp_path):
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [{"id": "k", "sha256": "xyz"}]}))
    with pytest.raises(OptionsError, match="sha256 must be 64 lowercase hex digits"):
        keys.load(tmp_path / "keys.json")


def test_a_token_bucket_allows_its_burst_then_its_rate():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limit = RateLimit(rate_per_s=2.0, burst=3)
    assert [limiter.take("k", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", limit) == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.take("k", limit) == 0.0 and limiter.take("other", limit) == 0.0


def test_a_model_gate_admits_its_bound_queues_its_pending_and_sheds_the_rest():
    async def scenario():
        gate = ModelGate("m", Shedding(max_in_flight=1, max_pending=1, max_wait_s=0.2))
        release = asyncio.Event()

        async def hold():
            async with gate.admit():
                await release.wait()

        first = asyncio.create_task(hold())
        await asyncio.sleep(0)
        second = asyncio.create_task(hold())  # waits for the slot
        await asyncio.sleep(0)
        with pytest.raises(problems.Overloaded, match="1 requests in flight and 1 waiting"):
            async with gate.admit():
                pass
        await asyncio.sleep(0.3)  # the waiting one gives up after max_wait_s
        with pytest.raises(problems.Overloaded, match="no free slot within 0.2 s"):
            await second
        release.set()
        await first
        assert (gate.in_flight, gate.pending, gate.shed) == (0, 0, 2)
    asyncio.run(scenario())


def test_psi_is_zero_for_the_reference_and_large_for_a_one_sided_mix():
    reference = {"negative": 0.5, "positive": 0.5}
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    monitor = DriftMonitor(reference, window=10, min_samples=4)
    for label in ["positive", "negative"] * 2:
        monitor.observe(label)
    assert monitor.value() == 0.0
    for _ in range(10):
        monitor.observe("positive")  # the window forgets the balanced ones
    assert monitor.samples == 10 and monitor.value() > 4
    assert math.isnan(DriftMonitor(reference, window=10, min_samples=4).value())


def test_options_refuse_half_a_tls_pair_and_wildcard_cors(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(OptionsError, match="both"):
        GatewayOptions(tls_cert=tmp_path / "cert.pem")
    with pytest.raises(OptionsError, match="no path, no"):
        GatewayOptions(cors_origins=("https://a.example/path",))


def test_gateway_run_without_flags_serves_loopback_on_8080_to_no_other_origin():
    run = gateway_cli.options_from(gateway_cli.parser().parse_args(["run"]))
    assert run.url == "http://127.0.0.1:8080" and not run.cors_origins


def test_every_problem_type_has_a_slug_status_and_description():
    known = problems.catalogue()
    assert {"unauthorized", "rate-limited", "body-too-large", "overloaded", "invalid-input", "malformed-body",
            "request-timeout", "internal"} <= set(known)
    assert all(problems.describe(cls)["description"] for cls in known.values())
    assert problems.RateLimited("x", 0.2).headers["Retry-After"] == "1"


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_the_largest_request_a_model_takes_is_within_its_json_value_bound(name):
    endpoint = BY_NAME[name]
    document = {"inputs": {}, "top": 1}
    for tensor in endpoint.inputs:
        if tensor.dtype == "TYPE_STRING":
            item = {"b64": "QUJD"}
        else:
            item = 0
            for dim in reversed(endpoint.bounds(tensor)[1]):
                item = [item] * dim
        document["inputs"][tensor.name] = [item] * endpoint.max_items
    body = json.dumps(document).encode()
    assert bodies.value_bound(body) <= endpoint.max_json_values
    bodies.parse_json(body, LIMITS, endpoint.max_json_values)  # not refused
