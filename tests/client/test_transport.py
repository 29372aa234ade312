from modelport.transport import TransportOptions
from modelport.transport.grpc import grpc_headers


def test_headers_are_also_sent_under_tritons_restricted_grpc_prefix():
    assert grpc_headers({"Modelport-Admin-Key": "k"}) == {
        "modelport-admin-key": "k", "triton-grpc-protocol-modelport-admin-key": "k"}
    assert grpc_headers({"triton-grpc-protocol-x": "1"}) == {"triton-grpc-protocol-x": "1"}
    assert grpc_headers(None) == {}


def test_options_keep_the_defaults_a_local_server_needs():
    options = TransportOptions(url="127.0.0.1:8000")
    assert (options.protocol, options.timeout_s, options.ssl) == ("http", 60.0, False)
