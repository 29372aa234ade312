"""The response-cache cells' inputs: the unique cell never repeats a request, the repeated one is a copy of the model
with only the cache switched on."""

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench.response_cache import repository_copy, unique_samples
from core.measure.payloads import Input, Sample
from tests.conftest import REPOSITORY, exported_repository


def test_unique_samples_differ_from_each_other_even_past_the_held_out_rows():
    rows = [Sample("m", (Input("x", "FP32", np.full((1, 4), float(i), np.float32)),), ("y",)) for i in range(3)]
    bodies = {s.inputs[0].array.tobytes() for s in unique_samples(rows, 1000)}
    assert len(bodies) == 1000


def test_the_repository_copy_switches_on_the_cache_of_the_model_and_nothing_else(tmp_path):
    exported_repository()
    on = repository_copy(REPOSITORY, tmp_path / "on", "digits", (), cache=True)
    off = repository_copy(REPOSITORY, tmp_path / "off", "digits", (), cache=False)
    cached, plain = (text_format.Parse((root / "digits" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
                     for root in (on, off))
    assert cached.response_cache.enable and not plain.HasField("response_cache")
    plain.response_cache.enable = True
    assert cached == plain and not list(on.glob("digits/card.*"))
