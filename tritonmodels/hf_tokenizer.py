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

import hf_tokenization
import text_encoding
from model_config import ModelConfig, answer_in_one_batch


class TritonPythonModel:
    def initialize(self, args):
        config = ModelConfig(args)
        config.string_input()
        outputs = config.outputs
        self.output_names = [o["name"] for o in outputs]
        dims = {tuple(o["dims"]) for o in outputs}
        wrong = [o["name"] for o in outputs
                 if o["name"] not in hf_tokenization.FIELDS or o["data_type"] != "TYPE_INT64"]
        if wrong or len(dims) != 1 or len(next(iter(dims), ())) != 1:
            raise config.error(
                f"outputs must be TYPE_INT64 tensors among {', '.join(hf_tokenization.FIELDS)} with one "
                f"dims [max length]; got {[(o['name'], o['data_type'], o['dims']) for o in outputs]}; fix models.toml")
        self.max_length = int(next(iter(dims))[0])
        self.max_text_bytes = config.integer("max_text_bytes", text_encoding.DEFAULT_MAX_TEXT_BYTES)
        config.deployed_file(hf_tokenization.TOKENIZER_FILE)
        try:
            self.tokenizer = hf_tokenization.load(config.version_dir, self.max_length)
        except ValueError as error:
            raise config.error(str(error)) from None

    def execute(self, requests):
        return answer_in_one_batch(
            requests, lambda raw: text_encoding.decode_texts(raw, self.max_text_bytes), text_encoding.TextRejected,
            lambda texts: hf_tokenization.encode(self.tokenizer, texts, self.output_names))
