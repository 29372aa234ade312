"""modelport's gateway: a label-aware JSON API generated from models.toml, and a web page, in front of Triton.

    python -m gateway run --triton 127.0.0.1:8001       # http://127.0.0.1:8080: the page, /v1/models, /docs

Modules, in the order a request meets them: `protocol` (header deadline) -> `accesslog` (request ID, log line)
-> `app` (routes; `keys` and `ratelimit`; `bodies` for size, deadline, UTF-8, depth; `inputs` against `catalogue`;
`shedding`) -> `backend` (Triton over gRPC with modelport.AsyncClient) -> `metrics` and `quality` (drift).
"""
