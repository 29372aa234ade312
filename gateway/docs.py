"""GET /docs: the API in plain HTML, generated from the same endpoints as /openapi.json (no CDN-hosted viewer)."""

from __future__ import annotations

import html
import json

from gateway.catalogue import Endpoint
from gateway.options import GatewayOptions


def example(endpoint: Endpoint) -> str:
    """A curl command for the endpoint, with the shape of its body."""
    tensor = endpoint.inputs[0]
    if endpoint.takes_files:  # a string, or a file's bytes: JSON ["text", {"b64": ...}] or one upload per item
        body = "-F inputs=@FILE"
    else:
        item = "0" if tensor.dtype != "TYPE_STRING" else '"..."'
        for dim in reversed(tensor.dims):  # -1: any size within the model's range
            item = "[" + ", ".join([item] * min(dim, 2) if dim > 0 else [item]) + (", ..." if dim > 2 or dim < 0
                                                                                  else "") + "]"
        names = ", ".join(f'"{t.name}": [{item if t is tensor else "..."}]' for t in endpoint.inputs)
        body = f"-H 'Content-Type: application/json' -d '{{\"inputs\": {{{names}}}}}'"
    return f'curl -H "Authorization: Bearer $MODELPORT_API_KEY" {body} URL{endpoint.path}'


def page(endpoints: list[Endpoint], options: GatewayOptions) -> str:
    sections = []
    for e in endpoints:
        outputs = ", ".join(f"{t.name} {t.dtype} {list(t.dims)}" + (f" labels {', '.join(t.labels)}" if t.labels
                                                                     else "") for t in e.outputs)
        sections.append(
            f"<section><h2 id='{html.escape(e.name)}'>POST {html.escape(e.path)}</h2>"
            f"<p>{html.escape(e.spec.description)}</p>"
            f"<p>Inputs: {html.escape(', '.join(f'{t.name} {t.dtype} {list(t.dims)}' for t in e.inputs))}; at most "
            f"{e.max_items} items per request{'; multipart: one file per item' if e.takes_files else ''}.</p>"
            f"<p>Outputs: {html.escape(outputs)}.</p>"
            f"<pre>{html.escape(example(e).replace('URL', options.url))}</pre>"
            f"<details><summary>Request schema</summary><pre>{html.escape(json.dumps(e.request_schema(), indent=1))}"
            f"</pre></details><details><summary>Response schema</summary>"
            f"<pre>{html.escape(json.dumps(e.response_schema(), indent=1))}</pre></details></section>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>modelport gateway API</title>"
            "<link rel='stylesheet' href='/static/page.css'></head><body class='docs'><h1>modelport gateway API</h1>"
            "<p>The models of models.toml that the repository serves and your key may call (send it as "
            "<code>Authorization: Bearer</code>; without it this page lists none). Machine-readable, with the same "
            "header: <code>/openapi.json</code>. Errors are problem details (RFC 9457): "
            "<code>type</code>, <code>title</code>, <code>status</code>, <code>detail</code>, <code>field</code> "
            "(a JSON Pointer), <code>fix</code>, <code>request_id</code>. Try it on <a href='/'>the page</a>.</p>"
            + "".join(sections) + "</body></html>")
