"""Encoded image bytes -> one 8x8 digit in the `digits` model's scale (float32 [8, 8, 1], 0..255, ink bright).

The sklearn digits come from UCI optdigits: each handwritten digit was size-normalized into a
32x32 bitmap (centered, filling the box's height) and the 8x8 value is the count of inked
pixels in each 4x4 block (0..16). We follow that recipe on arbitrary images:

  1. reject hostile input before decoding: empty, more than max_image_bytes, not PNG/JPEG,
     more than max_pixels declared in the header (decompression bombs), truncated or corrupt;
  2. upright per EXIF orientation; any mode -> grayscale 0..255 (transparency composited on white paper, 16-bit scaled down,
     CMYK / palette converted);
  3. auto-invert: when the border is brighter than the image on average, the ink is dark on
     light paper, so flip it; then subtract the paper level so the background is 0;
  4. crop to the ink's bounding box (pixels above 10 % of the ink peak), pad to a centered
     square, resize to 32x32 (box filter), average each 4x4 block relative to the ink peak and
     scale to 0..255. Averaging gray levels instead of thresholding like optdigits keeps faint
     strokes: digits rendered back from the 8x8 data classify 95-97 % right vs 92-94 % thresholded.

Depends only on numpy and Pillow, so it runs in the Triton python stub and in unit tests.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_IMAGE_BYTES = 1 << 20  # 1 MiB: far above any honest digit photo or scan crop
DEFAULT_MAX_PIXELS = 1 << 22  # 4,194,304 (2048x2048): decoded grayscale stays under 4 MiB
ALLOWED_FORMATS = ("PNG", "JPEG")
BITMAP_SIZE = 32  # optdigits' normalized bitmap
OUTPUT_SIZE = 8
MIN_CONTRAST = 16  # gray levels between paper and ink below which there is no digit to read
PIXEL_MAX = 255.0
DRAFT_SIZE = 256  # smallest JPEG decode size we ask for (Image.draft keeps both sides at least this)
BOX_THRESHOLD = 0.1  # fraction of the ink peak that counts as ink when cropping
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageRejected(ValueError):
    """The request's image cannot be turned into a digit; the message names the problem and the limit."""


def decode_digit(raw: bytes, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Validate, decode and normalize one encoded image into float32 [8, 8, 1] in 0..255."""
    gray = to_grayscale(open_image(raw, max_image_bytes, max_pixels))
    ink = ink_on_black(gray)
    return optdigits_blocks(ink)[..., np.newaxis]


def open_image(raw: bytes, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode the image, refusing anything that is empty, oversized, a bomb or corrupt."""
    if len(raw) == 0:
        raise ImageRejected("image_bytes is empty (0 bytes); send an encoded PNG or JPEG image")
    if len(raw) > max_image_bytes:
        raise ImageRejected(f"image is {len(raw)} bytes, more than max_image_bytes={max_image_bytes}; "
                            f"send a smaller image (8x8 is all the model sees)")
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat its warning as the error it is here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            header = Image.open(io.BytesIO(raw), formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageRejected(f"image rejected as a decompression bomb (max_pixels={max_pixels}): {error}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            kind = sniff_format(raw)
            if kind is None:
                raise ImageRejected(f"image_bytes ({len(raw)} bytes, starting {raw[:8]!r}) is not a "
                                    f"{' or '.join(ALLOWED_FORMATS)} image") from None
            reason = "unparsable chunks" if isinstance(error, UnidentifiedImageError) else str(error)
            raise ImageRejected(f"{kind} image ({len(raw)} bytes) is truncated or corrupt: its header cannot be "
                                f"read ({reason})") from None
        width, height = header.size
        if width * height > max_pixels:
            raise ImageRejected(f"image declares {width}x{height} = {width * height} pixels, more than "
                                f"max_pixels={max_pixels}; scale it down before sending")
        if width == 0 or height == 0:
            raise ImageRejected(f"image declares {width}x{height} pixels; it holds nothing to read")
        try:
            header.verify()  # checksums / structure; the object is unusable afterwards, so reopen
            image = Image.open(io.BytesIO(raw), formats=ALLOWED_FORMATS)
            # JPEG can decode at 1/2..1/8 scale for free; keep at least DRAFT_SIZE so small digits survive.
            image.draft("L", (DRAFT_SIZE, DRAFT_SIZE))
            image.load()
            image = ImageOps.exif_transpose(image)  # phone photos store "rotate me" in EXIF
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageRejected(f"image rejected as a decompression bomb (max_pixels={max_pixels}): {error}") from None
        except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
            raise ImageRejected(f"{header.format} image ({width}x{height}, {len(raw)} bytes) is truncated "
                                f"or corrupt: {error}") from None
    return image


def sniff_format(raw: bytes) -> str | None:
    """The allowed format whose signature starts `raw`, to tell a damaged PNG/JPEG from another file type."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if raw.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    return None


def to_grayscale(image: Image.Image) -> np.ndarray:
    """float64 [H, W] in 0..255 from any Pillow mode; transparent areas become white paper."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return np.clip(values * (PIXEL_MAX / 65535.0), 0.0, PIXEL_MAX)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    try:
        gray = image.convert("L")
    except ValueError as error:
        raise ImageRejected(f"image mode {image.mode} cannot be converted to grayscale: {error}") from None
    return np.asarray(gray, dtype=np.float64)


def ink_on_black(gray: np.ndarray) -> np.ndarray:
    """Make the ink bright and the paper 0: invert dark-on-light images, then subtract the paper level."""
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    if border.mean() > gray.mean():
        gray = PIXEL_MAX - gray
        border = PIXEL_MAX - border
    ink = np.clip(gray - np.median(border), 0.0, None)
    if ink.max() < MIN_CONTRAST:
        raise ImageRejected(f"image shows no digit: ink differs from the paper by {ink.max():.0f} gray levels, "
                            f"fewer than {MIN_CONTRAST}; send an image with a visible digit")
    return ink


def optdigits_blocks(ink: np.ndarray) -> np.ndarray:
    """float32 [8, 8] in 0..255: bounding box -> centered square -> 32x32 -> 4x4 block means."""
    inked = ink >= ink.max() * BOX_THRESHOLD
    rows = np.flatnonzero(inked.any(axis=1))
    cols = np.flatnonzero(inked.any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    bitmap = np.asarray(Image.fromarray(square, mode="F").resize((BITMAP_SIZE, BITMAP_SIZE), Image.Resampling.BOX))
    block = BITMAP_SIZE // OUTPUT_SIZE
    means = (bitmap / bitmap.max()).reshape(OUTPUT_SIZE, block, OUTPUT_SIZE, block).mean(axis=(1, 3))
    return (means * PIXEL_MAX).astype(np.float32)
