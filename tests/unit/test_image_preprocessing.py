"""Image preprocessing on the inputs a photo app really gets: every odd but valid image becomes the right pixels,
and every bad one a one-line reason (no model needed)."""

from __future__ import annotations

import base64
import io
import zlib
from pathlib import Path
from struct import pack

import numpy as np
import pytest
from PIL import Image

from inferopt.tasks.base import InvalidInput, Item
from inferopt.tasks.image_classification import ImageClassificationTask, ImageInput
from inferopt.tasks.image_classification.preprocessing import ImagePreprocessing, ImageProblem, decode

CONFIG = ImagePreprocessing(size=32, resize=36, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def task(num_classes: int = 3) -> ImageClassificationTask:
    return ImageClassificationTask(CONFIG, num_classes, ("cat", "dog", "fish")[:num_classes], label="t", location="")


def test_the_pixels_are_resized_cropped_and_normalized_in_channel_first_order() -> None:
    image = Image.new("RGB", (72, 36), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 18, 36))  # a blue left quarter: outside the centre crop
    pixels = CONFIG.array(encoded(image))
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[:, 16, 16], [1.0, 0.0, 0.0], atol=1e-6)  # (x / 255 - 0) / 1
    assert pixels[2].max() < 0.05  # the centre crop of 72x36 -> 64x32 holds none of the blue quarter
    imagenet = ImagePreprocessing(size=32, resize=36, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    np.testing.assert_allclose(imagenet.array(encoded(image))[:, 16, 16], [2.0, -2.0, -2.0], atol=1e-5)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (60, 40), (0, 255, 0))
    image.paste((255, 0, 0), (0, 0, 60, 20))  # red on top as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": red ends up on the right
    upright = decode(encoded(image, "JPEG", exif=exif.tobytes(), quality=95), CONFIG)
    assert upright.size == (40, 60)
    red_right = np.asarray(upright)[30, 35]
    assert red_right[0] > 200 and red_right[1] < 60


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (40, 40), 128), (128, 128, 128)),
        (Image.new("CMYK", (40, 40), (0, 255, 255, 0)), (255, 0, 0)),  # cyan-free: red
        (Image.new("RGBA", (40, 40), (0, 0, 0, 0)), (255, 255, 255)),  # transparent: the white background
        (Image.new("LA", (40, 40), (0, 255)), (0, 0, 0)),
    ],
    ids=["greyscale", "cmyk", "transparent", "grey-alpha"],
)
def test_every_mode_becomes_the_rgb_it_shows(image: Image.Image, expected: tuple[int, int, int]) -> None:
    fmt = "JPEG" if image.mode == "CMYK" else "PNG"
    rgb = decode(encoded(image, fmt), CONFIG)
    assert rgb.mode == "RGB"
    np.testing.assert_allclose(np.asarray(rgb)[20, 20], expected, atol=3)


def test_a_16_bit_png_is_scaled_not_clipped_white() -> None:
    values = np.full((40, 40), 32768, dtype=np.uint16)  # mid grey in 16 bits
    rgb = decode(encoded(Image.fromarray(values)), CONFIG)
    np.testing.assert_allclose(np.asarray(rgb)[5, 5], (128, 128, 128), atol=1)


def test_a_palette_png_with_transparency_is_composited() -> None:
    image = Image.new("P", (40, 40), 1)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.paste(0, (0, 0, 20, 40))
    rgb = np.asarray(decode(encoded(image, transparency=0), CONFIG))
    np.testing.assert_allclose(rgb[20, 5], (255, 255, 255), atol=1)  # index 0 is transparent
    np.testing.assert_allclose(rgb[20, 30], (200, 10, 10), atol=1)


def test_a_large_jpeg_is_decoded_in_draft_mode_and_still_big_enough() -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 1200, 3), dtype=np.uint8))
    rgb = decode(encoded(photo, "JPEG"), CONFIG)
    assert min(rgb.size) >= CONFIG.resize and rgb.size[0] < 1200  # DCT-scaled, never below the resize target
    assert CONFIG.array(encoded(photo, "JPEG")).shape == (3, 32, 32)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header says width x height (its pixel data is never reached: the header is refused)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return pack(">I", len(body)) + kind + body + pack(">I", zlib.crc32(kind + body))

    header = pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale: a 50 MB bitmap once decoded
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), (i * 80, 0, 0)) for i in range(3)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"GIF89a this is not really a picture", "GIF file is corrupt"),
        (b"%PDF-1.7 a document", "not an image"),
        (encoded(Image.new("RGB", (200, 200)), "JPEG")[:300], "truncated"),
        (bomb_png(20_000, 20_000), "400 MP"),
        (encoded(Image.new("RGB", (1, 1))), "1x1"),
        (animated_gif(), "animated"),
    ],
    ids=["empty", "corrupt-gif", "pdf", "truncated-jpeg", "bomb", "1x1", "animated-gif"],
)
def test_a_bad_image_gets_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageProblem, match=reason):
        CONFIG.array(data)


def test_the_task_names_the_bad_instance_and_keeps_the_others() -> None:
    good = encoded(Image.new("RGB", (40, 40), (10, 20, 30)))
    with pytest.raises(InvalidInput, match=r"instances\[1\].b64: .*truncated") as caught:
        task().preprocess([ImageInput(good), ImageInput(good[:60], field="instances[1].b64")])
    assert caught.value.field == "instances[1].b64"
    assert len(task().preprocess([good, ImageInput(good)])) == 2  # bytes or ImageInput


def test_instances_parameters_and_uploads() -> None:
    t = task()
    good = encoded(Image.new("RGB", (40, 40)))
    raw = t.instance({"b64": base64.b64encode(good).decode()}, "instances[0]")
    assert raw == ImageInput(good)
    assert t.instance({"b64": base64.urlsafe_b64encode(good).decode()}, "i").data == good
    for value, reason in [
        ("abc", "must be"),
        ({"image": "x"}, "must be"),
        ({"b64": "not base64!"}, "not valid base64"),
        ({"b64": 7}, "base64 string"),
        ({"b64": "", "x": 1}, "unknown fields"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            t.instance(value, "instances[0]")
    assert [r.top_k for r in t.parameters([raw, raw], {"top_k": 2}, "parameters")] == [2, 2]
    assert t.parameters([raw], {"top_k": "3"}, "query")[0].top_k == 3  # from a query string or form field
    for given, reason in [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 4}, "1 to 3"),
        ({"top_k": True}, "top_k"),
        ({"k": 1}, "unknown"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            t.parameters([raw], given, "parameters")
    assert t.upload(good, "file[0] (a.png)").field == "file[0] (a.png)"


def test_the_cache_key_holds_top_k_and_the_result_follows_it() -> None:
    t = task()
    good = encoded(Image.new("RGB", (40, 40)))
    assert t.canonical(ImageInput(good, 1)) != t.canonical(ImageInput(good, 2))
    assert t.canonical(ImageInput(good, 2, field="a")) == t.canonical(ImageInput(good, 2, field="b"))
    logits = {"logits": np.array([0.0, 2.0, 1.0], np.float32)}
    result = t.postprocess(logits, Item(None, options=2))
    assert [(c["index"], c["label"]) for c in result["top_k"]] == [(1, "dog"), (2, "fish")]
    scores = np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()
    assert result["top_k"][0]["score"] == pytest.approx(scores[1], abs=1e-6)


def test_preprocessing_round_trips_through_the_artifact_config() -> None:
    assert ImagePreprocessing.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        ImagePreprocessing.from_dict({"size": 3, "colour": 1})
    with pytest.raises(ValueError, match="between 1 and"):
        ImagePreprocessing(size=300, resize=256)


def test_image_flags_are_refused_where_they_do_not_apply() -> None:
    from inferopt.errors import InputError
    from inferopt.tasks.base import ModelOptions
    from inferopt.tasks.registry import for_model

    with pytest.raises(InputError, match="--image-size: not an option of the bundled EfficientNet-Lite0"):
        for_model(None, task="image-classification", options=ModelOptions(image_size=128))
    with pytest.raises(InputError, match="--labels: not an option of a text encoder"):
        for_model(None, options=ModelOptions(labels=Path("x.txt")))


def test_a_transparent_colour_key_and_a_multipage_tiff_are_handled() -> None:
    keyed = Image.new("RGB", (40, 40), (0, 0, 0))
    keyed.paste((200, 10, 10), (20, 0, 40, 40))
    rgb = np.asarray(decode(encoded(keyed, transparency=(0, 0, 0)), CONFIG))
    np.testing.assert_allclose(rgb[20, 5], (255, 255, 255), atol=1)  # the keyed black is transparent
    np.testing.assert_allclose(rgb[20, 30], (200, 10, 10), atol=1)
    pages = [Image.new("RGB", (40, 40), (0, 90, 0)), Image.new("RGB", (10, 10))]
    tiff = encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    np.testing.assert_allclose(np.asarray(decode(tiff, CONFIG))[5, 5], (0, 90, 0), atol=1)  # a thumbnail page


def test_unusual_digits_in_top_k_are_a_422_not_a_crash() -> None:
    raw = ImageInput(b"x")
    for k in ("³", "9" * 5000, "-1", " 2x"):
        with pytest.raises(InvalidInput, match="top_k"):
            task().parameters([raw], {"top_k": k}, "query")


def test_one_image_in_five_is_held_out_for_calibration_whatever_the_path(tmp_path: Path) -> None:
    from inferopt.tasks.image_classification.evaldata import split_for_calibration

    files = [(tmp_path / f"{i}.png", i % 3) for i in range(12)]
    kept, held = split_for_calibration(files, tmp_path)
    assert len(held) == 2 and len(kept) == 10 and not set(map(str, kept)) & set(map(str, held))
    relative = [(Path(str(f).replace(str(tmp_path), str(tmp_path / "." / "sub" / ".."))), c) for f, c in files]
    assert [str(f.resolve()) for f, _ in split_for_calibration(relative, tmp_path)[1]] == [str(f) for f, _ in held]
    assert len(split_for_calibration(files[:2], tmp_path)[1]) == 1  # at least one
