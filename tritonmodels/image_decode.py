"""`digits_image_decode`: encoded PNG/JPEG bytes -> one 8x8 digit for the `digits` model.

Contract (config.pbtxt is generated from models.toml; names come from it):
    backend "python", max_batch_size > 0 (requests arrive as [N, 1])
    input   one TYPE_STRING dims [1] (`image_bytes`)     encoded PNG or JPEG, any size and mode
    output  one, dims [8, 8, 1] (`image`, TYPE_FP32)     0..255, ink bright on a dark background
    parameters (string values holding integers, both optional):
        max_image_bytes  largest accepted encoded image  (default 1048576)
        max_pixels       largest accepted width*height, checked before decoding (default 4194304)

A request whose image is empty, too large, not PNG/JPEG, a decompression bomb, truncated or
corrupt, or blank gets its own INVALID_ARG error; the other requests of the batch still succeed.
The decoding itself lives in image_decoding.py, deployed beside this file.
"""

import numpy as np
from PIL import Image

import image_decoding
from model_config import ModelConfig, answer_in_one_batch


class TritonPythonModel:
    def initialize(self, args):
        config = ModelConfig(args)
        config.string_input()
        self.max_image_bytes = config.integer("max_image_bytes", image_decoding.DEFAULT_MAX_IMAGE_BYTES)
        self.max_pixels = config.integer("max_pixels", image_decoding.DEFAULT_MAX_PIXELS)
        # Pillow's own bomb guard as a second line behind our header check; this stub process
        # serves only this model, so the process-wide setting touches nothing else.
        Image.MAX_IMAGE_PIXELS = self.max_pixels
        self.output_name, _, self.output_dtype = config.only_output()

    def execute(self, requests):
        # Per request only the decoding; one stack and one dtype cast for the whole batch (issue 9).
        return answer_in_one_batch(
            requests, lambda encoded: [image_decoding.decode_digit(bytes(item), self.max_image_bytes, self.max_pixels)
                                       for item in encoded], image_decoding.ImageRejected,
            lambda images: {self.output_name: np.stack(images).astype(self.output_dtype, copy=False)})
