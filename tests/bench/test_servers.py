from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench.servers import without_dynamic_batching


def _write(repository, name, text):
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(text)
    (repository / name / "1" / "model.onnx").write_bytes(b"onnx")


def test_the_no_batching_copy_drops_only_the_dynamic_batcher(tmp_path):
    source = tmp_path / "repo"
    _write(source, "digits", 'name: "digits"\nbackend: "onnxruntime"\nmax_batch_size: 64\n'
                             'dynamic_batching { max_queue_delay_microseconds: 100 }\n'
                             'instance_group { count: 2 kind: KIND_CPU }\n')
    _write(source, "ens", 'name: "ens"\nplatform: "ensemble"\nmax_batch_size: 64\n')

    copy = without_dynamic_batching(source, tmp_path / "copy")

    digits = text_format.Parse((copy / "digits" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert not digits.HasField("dynamic_batching")
    assert digits.max_batch_size == 64 and digits.instance_group[0].count == 2
    assert (copy / "ens" / "config.pbtxt").read_text() == (source / "ens" / "config.pbtxt").read_text()
    assert (copy / "digits" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert "dynamic_batching" in (source / "digits" / "config.pbtxt").read_text()
