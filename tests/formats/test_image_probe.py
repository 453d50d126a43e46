"""Image kind and pixel size read from headers alone, for every container the simulators make and a few
broken inputs."""

from __future__ import annotations

import pytest

from omnirelay.formats.image_probe import image_kind, image_size
from omnirelay.simulators import media


@pytest.mark.parametrize(("encode", "kind"), [(media.png, "png"), (media.jpeg, "jpeg"), (media.webp, "webp")])
@pytest.mark.parametrize("size", [(1, 1), (640, 480), (17, 1999), (4096, 64)])
def test_kind_and_size(encode: object, kind: str, size: tuple[int, int]) -> None:
    data = encode(*size, "seed")  # type: ignore[operator]
    assert image_kind(data) == kind
    assert image_size(data) == size


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"RIFF\x00\x00\x00\x00WEBPVP8L",
        b"<svg/>",
    ],
)
def test_unknown_or_truncated_has_no_size(data: bytes) -> None:
    assert image_size(data) is None
