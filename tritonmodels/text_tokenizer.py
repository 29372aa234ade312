"""`sentiment_tokenizer`: UTF-8 text -> fixed-length token ids for `sentiment_classifier`.

Contract (config.pbtxt is generated from models.toml; names come from it):
    backend "python", max_batch_size > 0 (requests arrive as [N, 1])
    input   one TYPE_STRING dims [1] (`text`)              UTF-8 text
    output  one, dims [L] (`input_ids`, TYPE_INT64)        L = max_tokens, right-padded with 0
    parameters (string values holding integers):
        max_tokens      L, required; must equal the classifier's input length (64 for the reference model)
        max_text_bytes  largest accepted text in bytes (default 65536)
    file: tokenizer.json in this version directory (the export deploys it from the trained model)

Texts longer than L tokens keep their first L tokens. Invalid UTF-8 (the error names the byte
offset), empty or whitespace-only text, and text over max_text_bytes get that request's own
INVALID_ARG error. Encoding lives in text_encoding.py, which the trainer uses too.
"""

import text_encoding
from model_config import ModelConfig, answer_in_one_batch

TOKENIZER_FILE = "tokenizer.json"


class TritonPythonModel:
    def initialize(self, args):
        config = ModelConfig(args)
        config.string_input()
        self.max_tokens = config.integer("max_tokens")
        self.max_text_bytes = config.integer("max_text_bytes", text_encoding.DEFAULT_MAX_TEXT_BYTES)
        self.output_name, dims, self.output_dtype = config.only_output()
        if dims != [self.max_tokens]:
            raise config.error(f"output {self.output_name!r} must have dims [{self.max_tokens}] (max_tokens), "
                               f"got {dims}; fix models.toml")
        self.tokenizer = text_encoding.load_tokenizer(config.deployed_file(TOKENIZER_FILE))

    def execute(self, requests):
        # Per request only the UTF-8 check; the tokenizer runs once over the whole batch's texts (issue 9).
        return answer_in_one_batch(
            requests, lambda raw: text_encoding.decode_texts(raw, self.max_text_bytes), text_encoding.TextRejected,
            lambda texts: {self.output_name: text_encoding.encode_texts(self.tokenizer, texts, self.max_tokens).astype(
                self.output_dtype, copy=False)})
