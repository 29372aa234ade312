"""KServe v2 inference requests over HTTP, serialized once up front, and the check of each response.

Bodies come from tritonclient's own encoder (`InferenceServerClient.generate_request_body`), so the load test speaks
exactly what the Python client sends: the binary tensor extension (JSON header + raw bytes, the length of the header in
`Inference-Header-Content-Length`) or plain JSON. Pre-serializing keeps the load generator's CPU for sending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tritonclient.http as httpclient

from loadtest.payloads import Sample

ENCODINGS = ("binary", "json")
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class HttpInfer:
    name: str  # the statistics row, e.g. "digits"
    path: str
    body: bytes
    headers: dict[str, str]
    output_name: str
    expected_rows: int


def http_request(sample: Sample, encoding: str) -> HttpInfer:
    """The request for one sample. BYTES inputs that are not UTF-8 (encoded images) cannot travel in JSON (KServe v2
    JSON has no base64 for BYTES), so they always use the binary extension."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    binary = encoding == "binary" or not _json_safe(sample)
    infer_input = httpclient.InferInput(sample.input_name, list(sample.array.shape), sample.datatype)
    infer_input.set_data_from_numpy(sample.array, binary_data=binary)
    output = httpclient.InferRequestedOutput(sample.output_name, binary_data=binary)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([infer_input], outputs=[output])
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
        output_name=sample.output_name,
        expected_rows=int(sample.array.shape[0]),
    )


def response_error(status: int, body: bytes | None, headers, request: HttpInfer) -> str | None:
    """None when the response carries the requested output for every row; otherwise what was wrong, with the
    server's own error text when it sent one."""
    if status != 200:
        text = (body or b"")[:300].decode("utf-8", "replace")
        return f"HTTP {status} from {request.path}: {text}"
    header_length = headers.get(HEADER_LENGTH) if headers else None
    try:
        result = httpclient.InferenceServerClient.parse_response_body(
            body, header_length=int(header_length) if header_length else None
        )
        output = result.as_numpy(request.output_name)
    except Exception as error:
        return f"unparsable v2 response from {request.path}: {error!r}"
    if output is None or output.shape[0] != request.expected_rows or not np.all(np.isfinite(output)):
        shape = None if output is None else output.shape
        return f"{request.path}: output {request.output_name!r} expected {request.expected_rows} finite rows, got {shape}"
    return None


def _json_safe(sample: Sample) -> bool:
    if sample.datatype != "BYTES":
        return True
    try:
        for item in sample.array.ravel():
            item.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
