import io

import numpy as np
import pytest
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier

from export.data.digits import load_digits_images
from export.data.split import stratified_split
from tests.tritonmodels.images import png_declaring
from tests.tritonmodels.loading import load_helper

decoding = load_helper("digits_image_decode", "image_decoding")

IMAGES, LABELS = load_digits_images()
TRAIN, HELDOUT = stratified_split(LABELS, 0.2, seed=0)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def render(digit: np.ndarray, size: int = 32, dark_on_light: bool = False) -> Image.Image:
    """An 8x8 digit drawn large, the way a scanned or photographed digit would arrive."""
    pixels = digit[..., 0].astype(np.uint8)
    if dark_on_light:
        pixels = 255 - pixels
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)


def test_decoded_digit_is_float32_8x8x1_in_0_to_255():
    image = decoding.decode_digit(encode(render(IMAGES[0])))
    assert image.shape == (8, 8, 1) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() == 255.0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("dark_on_light", [False, True])
def test_rendered_digits_decode_close_to_their_original_8x8_in_both_polarities(fmt, dark_on_light):
    decoded = np.stack([decoding.decode_digit(encode(render(IMAGES[i], 32, dark_on_light), fmt))
                        for i in HELDOUT[:100]])
    assert np.abs(decoded - IMAGES[HELDOUT[:100]]).mean() < 15.0  # of 255


@pytest.mark.parametrize("size, dark_on_light", [(64, False), (28, True)])
def test_decoded_digits_are_recognized_by_a_classifier_trained_on_the_8x8_data(size, dark_on_light):
    classifier = KNeighborsClassifier(n_neighbors=3).fit(IMAGES[TRAIN].reshape(len(TRAIN), -1), LABELS[TRAIN])
    decoded = np.stack([decoding.decode_digit(encode(render(IMAGES[i], size, dark_on_light), "JPEG"))
                        for i in HELDOUT])
    accuracy = (classifier.predict(decoded.reshape(len(HELDOUT), -1)) == LABELS[HELDOUT]).mean()
    assert accuracy >= 0.9


def test_a_small_digit_on_a_large_page_is_cropped_and_centered():
    page = Image.new("L", (300, 200), 255)
    page.paste(render(IMAGES[HELDOUT[0]], 40, dark_on_light=True), (220, 20))
    decoded = decoding.decode_digit(encode(page))
    reference = decoding.decode_digit(encode(render(IMAGES[HELDOUT[0]], 40, dark_on_light=True)))
    np.testing.assert_allclose(decoded, reference, atol=1.0)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "I;16", "1", "CMYK"])
def test_every_image_mode_decodes_to_the_same_digit_as_grayscale(mode):
    gray = render(IMAGES[HELDOUT[1]], 32, dark_on_light=True)
    if mode == "1":
        gray = gray.point(lambda value: 255 if value > 127 else 0)  # bilevel without dithering
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    elif mode == "CMYK":
        converted = gray.convert("CMYK")
    else:
        converted = gray.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    expected = decoding.decode_digit(encode(gray, fmt))
    np.testing.assert_allclose(decoding.decode_digit(encode(converted, fmt)), expected, atol=24.0)


def test_a_photo_stored_sideways_with_an_exif_orientation_is_read_upright():
    upright = render(IMAGES[HELDOUT[4]], 64, dark_on_light=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer must rotate 90 degrees clockwise
    sideways = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)
    expected = decoding.decode_digit(encode(upright, "JPEG"))
    np.testing.assert_allclose(decoding.decode_digit(sideways), expected, atol=24.0)


def test_a_large_jpeg_decodes_like_a_small_one():
    small = decoding.decode_digit(encode(render(IMAGES[HELDOUT[5]], 64, dark_on_light=True), "JPEG"))
    large = decoding.decode_digit(encode(render(IMAGES[HELDOUT[5]], 1600, dark_on_light=True), "JPEG"))
    assert np.abs(large - small).mean() < 10.0


def test_transparent_background_counts_as_white_paper():
    ink = np.asarray(render(IMAGES[HELDOUT[2]], 32)) > 0
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 3] = np.where(ink, 255, 0)  # black ink, fully transparent elsewhere (black underneath)
    decoded = decoding.decode_digit(encode(Image.fromarray(rgba, "RGBA")))
    expected = decoding.decode_digit(encode(Image.fromarray(np.where(ink, 0, 255).astype(np.uint8))))
    np.testing.assert_allclose(decoded, expected, atol=1.0)


def test_gray_paper_becomes_a_zero_background():
    pixels = np.where(np.asarray(render(IMAGES[HELDOUT[3]], 32)) > 0, 20, 200).astype(np.uint8)
    decoded = decoding.decode_digit(encode(Image.fromarray(pixels)))
    assert decoded[..., 0][:, 0].max() == 0.0 or decoded[..., 0][:, -1].max() == 0.0
    assert decoded.max() == 255.0


def test_zero_bytes_are_rejected():
    with pytest.raises(decoding.ImageRejected, match="empty"):
        decoding.decode_digit(b"")


def test_more_bytes_than_max_image_bytes_are_rejected_before_decoding():
    with pytest.raises(decoding.ImageRejected, match="max_image_bytes=100"):
        decoding.decode_digit(encode(render(IMAGES[0], 64)), max_image_bytes=100)


def test_bytes_that_are_not_png_or_jpeg_are_rejected():
    with pytest.raises(decoding.ImageRejected, match="is not a PNG or JPEG image"):
        decoding.decode_digit(b"GIF89a not really")
    with pytest.raises(decoding.ImageRejected, match="is not a PNG or JPEG image"):
        decoding.decode_digit(encode(render(IMAGES[0]), "BMP"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_rejected_as_truncated_or_corrupt(fmt):
    data = encode(render(IMAGES[0], 64), fmt)
    with pytest.raises(decoding.ImageRejected, match="truncated or corrupt"):
        decoding.decode_digit(data[: len(data) * 2 // 3])


def test_a_png_with_a_broken_chunk_is_called_a_corrupt_png_not_a_foreign_format():
    data = bytearray(encode(render(IMAGES[0], 64)))
    data[data.index(b"IDAT"):data.index(b"IDAT") + 4] = b"\x00\x01\x02\x03"
    with pytest.raises(decoding.ImageRejected, match="PNG image .* truncated or corrupt"):
        decoding.decode_digit(bytes(data))


def test_a_png_with_a_damaged_checksum_is_rejected():
    data = bytearray(encode(render(IMAGES[0], 64)))
    data[data.index(b"IDAT") + 10] ^= 0xFF  # a compressed pixel byte: only the CRC / inflate can tell
    with pytest.raises(decoding.ImageRejected, match="truncated or corrupt"):
        decoding.decode_digit(bytes(data))


def test_a_header_declaring_100000x100000_pixels_is_rejected_before_decoding():
    with pytest.raises(decoding.ImageRejected, match=r"10000000000 pixels"):
        decoding.decode_digit(png_declaring(100_000, 100_000))
    with pytest.raises(decoding.ImageRejected, match=r"5000x5000 = 25000000 pixels, more than max_pixels=4194304"):
        decoding.decode_digit(png_declaring(5000, 5000))


def test_a_real_decompression_bomb_is_rejected():
    bomb = encode(Image.new("L", (6000, 6000), 255), optimize=True)  # 36 Mpixel in a few tens of KB
    assert len(bomb) < decoding.DEFAULT_MAX_IMAGE_BYTES
    with pytest.raises(decoding.ImageRejected, match="max_pixels"):
        decoding.decode_digit(bomb)


def test_pillows_own_bomb_guard_is_reported_as_a_rejection(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(decoding.ImageRejected, match="decompression bomb"):
        decoding.decode_digit(encode(render(IMAGES[0], 40)))


def test_a_blank_page_is_rejected_as_showing_no_digit():
    with pytest.raises(decoding.ImageRejected, match="no digit"):
        decoding.decode_digit(encode(Image.new("L", (32, 32), 240), "JPEG"))
