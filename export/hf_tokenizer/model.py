"""The tokenizer step the export generates for a [model.text] table: UTF-8 text -> the int64 tensors the Hugging Face
model's ONNX graph takes, with the checkpoint's own tokenizer.json. The same file serves every such model: its
contract comes from config.pbtxt (generated from models.toml), nothing here is per model.

    input    one TYPE_STRING tensor, dims [1]: UTF-8 text
    outputs  input_ids and those of attention_mask, token_type_ids the graph takes: TYPE_INT64, one dims [L] for all
    parameter max_text_bytes: the largest accepted text in bytes
    files beside it (the export deploys them): tokenizer.json and tokenizer_config.json from the checkpoint,
             hf_tokenization.py (the encoding, which the export's end-to-end parity check runs too), text_encoding.py

Texts longer than L tokens are truncated to L. Invalid UTF-8 (the error names the byte offset), empty or
whitespace-only text and text over max_text_bytes get that request's own INVALID_ARG error, exactly as
`sentiment_tokenizer` answers them (text_encoding.py is its validation code).
"""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the stub does not put the model dir on sys.path

import hf_tokenization  # noqa: E402
import text_encoding  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = config["name"]
        inputs = config.get("input", [])
        if len(inputs) != 1 or inputs[0]["data_type"] != "TYPE_STRING":
            raise pb_utils.TritonModelException(f"{name}: needs exactly one TYPE_STRING input, got {inputs}")
        self.input_name = inputs[0]["name"]
        outputs = config.get("output", [])
        self.output_names = [o["name"] for o in outputs]
        dims = {tuple(o["dims"]) for o in outputs}
        wrong = [o["name"] for o in outputs
                 if o["name"] not in hf_tokenization.FIELDS or o["data_type"] != "TYPE_INT64"]
        if wrong or len(dims) != 1 or len(next(iter(dims), ())) != 1:
            raise pb_utils.TritonModelException(
                f"{name}: outputs must be TYPE_INT64 tensors among {', '.join(hf_tokenization.FIELDS)} with one "
                f"dims [max length]; got {[(o['name'], o['data_type'], o['dims']) for o in outputs]}; fix models.toml")
        self.max_length = int(next(iter(dims))[0])
        raw = config.get("parameters", {}).get("max_text_bytes", {}).get("string_value")
        self.max_text_bytes = int(raw) if raw else text_encoding.DEFAULT_MAX_TEXT_BYTES
        directory = os.path.join(args["model_repository"], args["model_version"])
        if not os.path.isfile(os.path.join(directory, hf_tokenization.TOKENIZER_FILE)):
            raise pb_utils.TritonModelException(
                f"{name}: {os.path.join(directory, hf_tokenization.TOKENIZER_FILE)} is missing; run `make export`")
        try:
            self.tokenizer = hf_tokenization.load(directory, self.max_length)
        except ValueError as error:
            raise pb_utils.TritonModelException(f"{name}: {error}") from None

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        raw_texts = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
        try:
            texts = [text_encoding.decode_text(bytes(raw), self.max_text_bytes) for raw in raw_texts]
        except text_encoding.TextRejected as error:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
        arrays = hf_tokenization.encode(self.tokenizer, texts, self.output_names)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, arrays[n]) for n in self.output_names])
