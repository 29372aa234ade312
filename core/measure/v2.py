"""KServe v2 inference requests over HTTP, serialized once up front, and the check of each response.

Bodies come from tritonclient's own encoder (`InferenceServerClient.generate_request_body`), so the load test speaks
exactly what the Python client sends: the binary tensor extension (JSON header + raw bytes, the length of the header in
`Inference-Header-Content-Length`) or plain JSON. Pre-serializing keeps the load generator's CPU for sending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tritonclient.http as httpclient

from core.measure.payloads import Sample

ENCODINGS = ("binary", "json")
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class HttpInfer:
    name: str  # the statistics row: the Triton model name
    path: str
    body: bytes
    headers: dict[str, str]
    output_names: tuple[str, ...]
    expected_rows: int


def http_request(sample: Sample, encoding: str) -> HttpInfer:
    """The request for one sample, asking for every output. BYTES inputs that are not UTF-8 (encoded images) cannot
    travel in JSON (KServe v2 JSON has no base64 for BYTES), nor can BF16, so such requests always use the binary
    extension."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    binary = encoding == "binary" or not _json_safe(sample)
    inputs = []
    for tensor in sample.inputs:
        infer_input = httpclient.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
        infer_input.set_data_from_numpy(tensor.array, binary_data=binary)
        inputs.append(infer_input)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in sample.outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    # Triton gzips responses for clients that accept it, and FastHttpUser accepts gzip unless told otherwise; the
    # Python client asks for nothing, so neither do we: compression would be load the real clients never cause.
    headers = {"Accept-Encoding": "identity"}
    if json_size is None:
        headers["Content-Type"] = "application/json"
    else:
        headers.update({"Content-Type": "application/octet-stream", HEADER_LENGTH: str(json_size)})
    return HttpInfer(
        name=sample.model,
        path=f"/v2/models/{sample.model}/infer",
        body=body if isinstance(body, bytes) else body.encode("utf-8"),
        headers=headers,
        output_names=sample.outputs,
        expected_rows=sample.rows,
    )


def response_error(status: int, body: bytes | None, headers, request: HttpInfer) -> str | None:
    """None when the response carries every requested output for every row; otherwise what was wrong, with the
    server's own error text when it sent one."""
    if status != 200:
        text = (body or b"")[:300].decode("utf-8", "replace")
        return f"HTTP {status} from {request.path}: {text}"
    header_length = headers.get(HEADER_LENGTH) if headers else None
    try:
        result = httpclient.InferenceServerClient.parse_response_body(
            body, header_length=int(header_length) if header_length else None
        )
        outputs = {name: result.as_numpy(name) for name in request.output_names}
    except Exception as error:
        return f"unparsable v2 response from {request.path}: {error!r}"
    return outputs_error(request.path, outputs, request.expected_rows)


def outputs_error(where: str, outputs: dict[str, np.ndarray | None], expected_rows: int) -> str | None:
    """None when every output is there with one row per request row, numbers all finite; else the first problem.
    Shared by the HTTP and the gRPC users."""
    for name, output in outputs.items():
        numeric = output is not None and output.dtype.kind in "fc"
        if output is None or output.shape[:1] != (expected_rows,) or (numeric and not np.all(np.isfinite(output))):
            shape = None if output is None else list(output.shape)
            return f"{where}: output {name!r} expected {expected_rows} finite rows, got {shape}"
    return None


def _json_safe(sample: Sample) -> bool:
    for tensor in sample.inputs:
        if tensor.datatype == "BF16":
            return False
        if tensor.datatype == "BYTES":
            try:
                for item in tensor.array.ravel():
                    item.decode("utf-8")
            except UnicodeDecodeError:
                return False
    return True
