"""`digits_image_decode`: encoded PNG/JPEG bytes -> one 8x8 digit for the `digits` model.

Contract (config.pbtxt is generated from models.toml; this is what it must declare):
    backend "python", max_batch_size > 0 (requests arrive as [N, 1])
    input  `image_bytes` TYPE_STRING dims [1]      encoded PNG or JPEG, any size and mode
    output `image`       TYPE_FP32   dims [8, 8, 1] 0..255, ink bright on a dark background
    parameters (string values holding integers, both optional):
        max_image_bytes  largest accepted encoded image  (default 1048576)
        max_pixels       largest accepted width*height, checked before decoding (default 4194304)

A request whose image is empty, too large, not PNG/JPEG, a decompression bomb, truncated or
corrupt, or blank gets its own INVALID_ARG error; the other requests of the batch still succeed.
The decoding itself lives in image_decoding.py next to this file.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the stub does not put the model dir on sys.path

import image_decoding  # noqa: E402

INPUT_NAME = "image_bytes"
OUTPUT_NAME = "image"


def integer_parameter(config: dict, name: str, default: int) -> int:
    raw = config.get("parameters", {}).get(name, {}).get("string_value")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
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
        self.max_image_bytes = integer_parameter(config, "max_image_bytes", image_decoding.DEFAULT_MAX_IMAGE_BYTES)
        self.max_pixels = integer_parameter(config, "max_pixels", image_decoding.DEFAULT_MAX_PIXELS)
        # Pillow's own bomb guard as a second line behind our header check; this stub process
        # serves only this model, so the process-wide setting touches nothing else.
        Image.MAX_IMAGE_PIXELS = self.max_pixels
        output = pb_utils.get_output_config_by_name(config, OUTPUT_NAME)
        if output is None:
            raise pb_utils.TritonModelException(f"{config['name']}: config must declare output {OUTPUT_NAME!r}")
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests):
        # Per request only the decoding; one stack and one dtype cast for the whole batch (issue 9).
        # Triton has checked the input's name, datatype and shape against the config before execute.
        responses = [None] * len(requests)
        images, owners = [], []  # owners: (request index, its first and last+1 row in images)
        for index, request in enumerate(requests):
            encoded = request.inputs()[0].as_numpy().reshape(-1)
            try:
                decoded = [image_decoding.decode_digit(bytes(item), self.max_image_bytes, self.max_pixels)
                           for item in encoded]
            except image_decoding.ImageRejected as error:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
                continue
            owners.append((index, len(images), len(images) + len(decoded)))
            images += decoded
        if images:
            batch = np.stack(images).astype(self.output_dtype, copy=False)
            for index, start, stop in owners:
                responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT_NAME, batch[start:stop])])
        return responses
