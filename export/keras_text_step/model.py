"""The preprocessing step the export generates for a Keras model that takes raw strings through a `TextVectorization`
or `StringLookup` layer: UTF-8 text -> the token ids the rest of the model (exported to ONNX) takes. The same file serves every such
model: its contract comes from config.pbtxt, the layer's settings and vocabulary from text_vectorization.json, which
the export writes from the layer itself.

    input    one TYPE_STRING tensor, dims [1]: UTF-8 text
    output   one TYPE_INT64 tensor, dims [output_sequence_length] (StringLookup: [1])
    parameter max_text_bytes: the largest accepted text in bytes
    files beside it: text_vectorization.json, text_vectorization.py (the encoding, which the export's end-to-end
             parity check runs too), text_encoding.py (the validation `sentiment_tokenizer` answers bad texts with)
"""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the stub does not put the model dir on sys.path

import text_encoding  # noqa: E402
import text_vectorization  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = config["name"]
        inputs, outputs = config.get("input", []), config.get("output", [])
        if len(inputs) != 1 or inputs[0]["data_type"] != "TYPE_STRING":
            raise pb_utils.TritonModelException(f"{name}: needs exactly one TYPE_STRING input, got {inputs}")
        if len(outputs) != 1 or outputs[0]["data_type"] != "TYPE_INT64":
            raise pb_utils.TritonModelException(f"{name}: needs exactly one TYPE_INT64 output, got {outputs}")
        self.input_name, self.output_name = inputs[0]["name"], outputs[0]["name"]
        raw = config.get("parameters", {}).get("max_text_bytes", {}).get("string_value")
        self.max_text_bytes = int(raw) if raw else text_encoding.DEFAULT_MAX_TEXT_BYTES
        path = os.path.join(args["model_repository"], args["model_version"], text_vectorization.STEP_FILE)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{name}: {path} is missing; run `make export`")
        self.layer = text_vectorization.load(path)
        dims = [int(d) for d in outputs[0]["dims"]]
        if dims != [self.layer.length]:
            raise pb_utils.TritonModelException(f"{name}: output dims {dims} differ from the layer's "
                                                f"[{self.layer.length}]; run `make export`")

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        raw_texts = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
        try:
            texts = [text_encoding.decode_text(bytes(raw), self.max_text_bytes) for raw in raw_texts]
        except text_encoding.TextRejected as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name,
                                                                          self.layer.encode(texts))])
