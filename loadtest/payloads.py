"""Realistic request payloads per model, from the project's real datasets; nothing synthetic.

- digits:       sklearn's 8x8 digits in the serving scale (export.data.digits), one image per request;
- digits_image: the same digits encoded as real PNG files of several sizes, half of them dark ink on light paper
                (as a scanned or photographed digit would be), so the decode step's resize and auto-invert both work;
- sentiment:    Pang & Lee movie-review sentences (export.data.polarity), picked across the length range.
If a dataset cannot be loaded, building payloads fails with the loader's reason: a load test on invented data would
measure the wrong thing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MODELS = ("digits", "digits_image", "sentiment")
PNG_SIDES = (8, 28, 64, 128)


class PayloadUnavailable(RuntimeError):
    """A dataset behind the payloads could not be loaded; the message carries the loader's reason."""


@dataclass(frozen=True)
class Sample:
    """One request's input: a batch of one, in the model's contract (name, Triton datatype, shape [1, ...dims])."""

    model: str
    input_name: str
    datatype: str
    array: np.ndarray
    output_name: str = "probabilities"


def samples(model: str, limit: int = 256) -> tuple[Sample, ...]:
    if model not in _BUILDERS:
        raise ValueError(f"no payloads for model {model!r}; known models: {', '.join(MODELS)}")
    return _BUILDERS[model](limit)


@lru_cache(maxsize=None)
def _digits_images() -> np.ndarray:
    try:
        from export.data.digits import load_digits_images

        images, _labels = load_digits_images()
    except Exception as error:  # the loader's own message says what is missing
        raise PayloadUnavailable(f"digits payloads need export.data.digits.load_digits_images(): {error!r}") from error
    return images


def digits_samples(limit: int) -> tuple[Sample, ...]:
    images = _digits_images()[:limit]
    return tuple(Sample("digits", "image", "FP32", image[np.newaxis].astype(np.float32)) for image in images)


def encode_png(image: np.ndarray, side: int, dark_on_light: bool) -> bytes:
    """An 8x8x1 0..255 digit as a grayscale PNG of side x side pixels."""
    from PIL import Image

    pixels = np.clip(image[..., 0], 0, 255).astype(np.uint8)
    if dark_on_light:
        pixels = 255 - pixels
    picture = Image.fromarray(pixels, mode="L").resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def png_samples(limit: int) -> tuple[Sample, ...]:
    images = _digits_images()[:limit]
    out = []
    for i, image in enumerate(images):
        png = encode_png(image, PNG_SIDES[i % len(PNG_SIDES)], dark_on_light=bool(i % 2))
        out.append(Sample("digits_image", "image_bytes", "BYTES", np.array([[png]], dtype=np.object_)))
    return tuple(out)


def sentence_samples(limit: int) -> tuple[Sample, ...]:
    try:
        from export.data.polarity import load_polarity

        texts, _labels = load_polarity()
    except Exception as error:
        raise PayloadUnavailable(f"sentiment payloads need export.data.polarity.load_polarity(): {error!r}") from error
    # evenly spaced over the length-sorted corpus, then interleaved, so short and long sentences alternate
    by_length = sorted(texts, key=len)
    step = max(1, len(by_length) // limit)
    picked = by_length[::step][:limit]
    mixed = [s for pair in zip(picked[::2], reversed(picked[1::2])) for s in pair] or picked
    return tuple(
        Sample("sentiment", "text", "BYTES", np.array([[text.encode("utf-8")]], dtype=np.object_)) for text in mixed
    )


_BUILDERS = {"digits": digits_samples, "digits_image": png_samples, "sentiment": sentence_samples}
