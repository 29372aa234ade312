"""What an image input will cost to decode, read from its header alone: the pixels it decodes to.

A blank 2048x2048 PNG is 4 KB on the wire and 12 MB of RGB once decoded, so the bytes sent say nothing of the work.
Pillow's `Image.open` reads only the header (the size), never the pixel data; the gateway charges the key's token
bucket by the pixels (`--pixels-per-token`) before Triton decodes anything.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Iterable

from PIL import Image

# what the image models here decode (tritonmodels/image_decoding.py), by their signatures
FORMATS = ("PNG", "JPEG")
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8")
# Pillow refuses headers past this (DecompressionBombError); such an image costs as much as the largest it reads
_BOMB_PIXELS = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 1 << 31


def decoded_pixels(data: bytes) -> int:
    """Width x height from the header; 0 for bytes that are no PNG or JPEG (texts cost a prefix test)."""
    if not data.startswith(_SIGNATURES):
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                return width * height
    except Image.DecompressionBombError:
        return _BOMB_PIXELS
    except Exception:  # anything Pillow cannot identify is not an image it will decode
        return 0


def tokens_for(items: Iterable[bytes], pixels_per_token: int) -> int:
    """Rate-limit tokens the items cost beyond the request's own one: a token per started `pixels_per_token`."""
    pixels = sum(decoded_pixels(item) for item in items if isinstance(item, bytes))
    return max(0, math.ceil(pixels / pixels_per_token) - 1)
