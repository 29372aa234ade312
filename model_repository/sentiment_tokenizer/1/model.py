"""`sentiment_tokenizer`: UTF-8 text -> fixed-length token ids for `sentiment_classifier`.

Contract (config.pbtxt is generated from models.toml; this is what it must declare):
    backend "python", max_batch_size > 0 (requests arrive as [N, 1])
    input  `text`      TYPE_STRING dims [1]   UTF-8 text
    output `input_ids` TYPE_INT64  dims [L]   L = max_tokens, right-padded with 0
    parameters (string values holding integers):
        max_tokens      L, required; must equal the classifier's input length (64 for the reference model)
        max_text_bytes  largest accepted text in bytes (default 65536)
    file: tokenizer.json in this version directory (the export deploys it from the trained model)

Texts longer than L tokens keep their first L tokens. Invalid UTF-8 (the error names the byte
offset), empty or whitespace-only text, and text over max_text_bytes get that request's own
INVALID_ARG error. Encoding lives in text_encoding.py, which the trainer uses too.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the stub does not put the model dir on sys.path

import text_encoding  # noqa: E402

INPUT_NAME = "text"
OUTPUT_NAME = "input_ids"
TOKENIZER_FILE = "tokenizer.json"


def integer_parameter(config: dict, name: str, default: int | None) -> int:
    raw = config.get("parameters", {}).get(name, {}).get("string_value")
    if raw is None and default is not None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise pb_utils.TritonModelException(
            f"{config['name']}: parameter {name} must be a positive integer, got {raw!r}; fix it in models.toml")
    return value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        inputs = [i["name"] for i in config.get("input", [])]
        if inputs != [INPUT_NAME]:  # execute takes the request's one input without looking up its name
            raise pb_utils.TritonModelException(
                f"{config['name']}: config must declare exactly one input {INPUT_NAME!r}, got {inputs}; "
                f"fix models.toml")
        self.max_tokens = integer_parameter(config, "max_tokens", None)
        self.max_text_bytes = integer_parameter(config, "max_text_bytes", text_encoding.DEFAULT_MAX_TEXT_BYTES)
        output = pb_utils.get_output_config_by_name(config, OUTPUT_NAME)
        if output is None or list(output["dims"]) != [self.max_tokens]:
            raise pb_utils.TritonModelException(
                f"{config['name']}: output {OUTPUT_NAME!r} must have dims [{self.max_tokens}] (max_tokens), "
                f"got {None if output is None else list(output['dims'])}; fix models.toml")
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        path = os.path.join(args["model_repository"], args["model_version"], TOKENIZER_FILE)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{config['name']}: {path} is missing; run `make export`")
        self.tokenizer = text_encoding.load_tokenizer(path)

    def execute(self, requests):
        # Per request only the UTF-8 check; the tokenizer runs once over the whole batch's texts (issue 9).
        # Triton has checked the input's name, datatype and shape against the config before execute.
        responses = [None] * len(requests)
        texts, owners = [], []  # owners: (request index, its first and last+1 row in texts)
        for index, request in enumerate(requests):
            raw_texts = request.inputs()[0].as_numpy().reshape(-1)
            try:
                decoded = [text_encoding.decode_text(bytes(raw), self.max_text_bytes) for raw in raw_texts]
            except text_encoding.TextRejected as error:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
                continue
            owners.append((index, len(texts), len(texts) + len(decoded)))
            texts += decoded
        if texts:
            ids = text_encoding.encode_texts(self.tokenizer, texts, self.max_tokens).astype(self.output_dtype,
                                                                                          copy=False)
            for index, start, stop in owners:
                responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT_NAME, ids[start:stop])])
        return responses
