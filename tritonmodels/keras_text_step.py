"""The preprocessing step the export generates for a Keras model that takes raw strings through a `TextVectorization`
or `StringLookup` layer: UTF-8 text -> the token ids the rest of the model (exported to ONNX) takes. The same file
serves every such model: its contract comes from config.pbtxt, the layer's settings and vocabulary from
text_vectorization.json, which the export writes from the layer itself.

    input    one TYPE_STRING tensor, dims [1]: UTF-8 text
    output   one TYPE_INT64 tensor, dims [output_sequence_length] (StringLookup: [1])
    parameter max_text_bytes: the largest accepted text in bytes
    files beside it: text_vectorization.json, text_vectorization.py (the encoding, which the export's end-to-end
             parity check runs too), text_encoding.py (the validation `sentiment_tokenizer` answers bad texts with)
"""

import text_encoding
import text_vectorization
from model_config import ModelConfig, answer_in_one_batch


class TritonPythonModel:
    def initialize(self, args):
        config = ModelConfig(args)
        config.string_input()
        self.output_name, dims, _ = config.only_output("TYPE_INT64")
        self.max_text_bytes = config.integer("max_text_bytes", text_encoding.DEFAULT_MAX_TEXT_BYTES)
        self.layer = text_vectorization.load(config.deployed_file(text_vectorization.STEP_FILE))
        if dims != [self.layer.length]:
            raise config.error(f"output dims {dims} differ from the layer's [{self.layer.length}]; run `make export`")

    def execute(self, requests):
        return answer_in_one_batch(
            requests, lambda raw: text_encoding.decode_texts(raw, self.max_text_bytes), text_encoding.TextRejected,
            lambda texts: {self.output_name: self.layer.encode(texts)})
