"""The MP4 writer: the boxes a player needs are there and agree with each other, and a real decoder plays it."""

from __future__ import annotations

import io
import struct

import av
import pytest

from omnirelay.simulators.media_video import mp4


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box between ``start`` and ``end``."""
    end = len(data) if end is None else end
    found = []
    pos = start
    while pos < end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8 and pos + size <= end, f"box {kind!r} at {pos} overruns its parent"
        found.append((kind, pos + 8, pos + size))
        pos += size
    assert pos == end
    return found


def child(data: bytes, parent: tuple[bytes, int, int], kind: bytes, skip: int = 0) -> tuple[bytes, int, int]:
    matches = [b for b in boxes(data, parent[1] + skip, parent[2]) if b[0] == kind]
    assert len(matches) == 1, f"expected one {kind!r} in {parent[0]!r}"
    return matches[0]


def path(data: bytes, *kinds: bytes) -> tuple[bytes, int, int]:
    top = {b[0]: b for b in boxes(data)}
    node = top[kinds[0]]
    for kind in kinds[1:]:
        node = child(data, node, kind)
    return node


def test_top_level_is_ftyp_moov_mdat_and_sample_tables_point_into_mdat() -> None:
    data = mp4(2.0, 320, 240, "seed-1")
    assert [b[0] for b in boxes(data)] == [b"ftyp", b"moov", b"mdat"]
    ftyp = path(data, b"ftyp")
    assert data[ftyp[1] : ftyp[1] + 4] == b"isom"

    mvhd = path(data, b"moov", b"mvhd")
    timescale, duration = struct.unpack_from(">II", data, mvhd[1] + 12)
    assert duration / timescale == pytest.approx(2.0)

    tkhd = path(data, b"moov", b"trak", b"tkhd")
    width, height = struct.unpack_from(">II", data, tkhd[2] - 8)
    assert (width >> 16, height >> 16) == (320, 240)

    hdlr = path(data, b"moov", b"trak", b"mdia", b"hdlr")
    assert data[hdlr[1] + 8 : hdlr[1] + 12] == b"vide"

    stbl = path(data, b"moov", b"trak", b"mdia", b"minf", b"stbl")
    stsd = child(data, stbl, b"stsd")
    avc1 = child(data, stsd, b"avc1", skip=8)
    avcc = child(data, avc1, b"avcC", skip=78)
    assert data[avcc[1]] == 1 and data[avcc[1] + 1] == 66  # version 1, Baseline profile

    stts = child(data, stbl, b"stts")
    _, entries, count, delta = struct.unpack_from(">IIII", data, stts[1])
    stsz = child(data, stbl, b"stsz")
    _, uniform, samples = struct.unpack_from(">III", data, stsz[1])
    sizes = struct.unpack_from(f">{samples}I", data, stsz[1] + 12)
    stco = child(data, stbl, b"stco")
    _, chunks, offset = struct.unpack_from(">III", data, stco[1])
    mdat = path(data, b"mdat")
    assert (entries, count, uniform, chunks) == (1, samples, 0, 1)
    assert samples == 50 and delta * count == 2 * 12_800
    assert offset == mdat[1] and offset + sum(sizes) == mdat[2] == len(data)
    first = data[offset : offset + sizes[0]]
    assert struct.unpack_from(">I", first)[0] == sizes[0] - 4 and first[4] & 0x1F == 5  # one IDR NAL, length-framed


@pytest.mark.parametrize(("seconds", "width", "height", "frames"), [(5, 1280, 720, 125), (0.3, 64, 48, 8)])
def test_a_real_decoder_plays_every_frame(seconds: float, width: int, height: int, frames: int) -> None:
    with av.open(io.BytesIO(mp4(seconds, width, height, "play"))) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", width, height)
        decoded = list(container.decode(video=0))
        assert container.duration / 1_000_000 == pytest.approx(seconds, abs=1 / 25)  # whole frames at 25 fps
    assert len(decoded) == frames
    assert decoded[0].key_frame and not decoded[1].key_frame
    assert bytes(decoded[-1].planes[0]) == bytes(decoded[0].planes[0])  # the skipped frames repeat the picture


def test_odd_sizes_are_cropped_from_whole_macroblocks() -> None:
    with av.open(io.BytesIO(mp4(1, 100, 74, "odd"))) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (100, 74)
        assert len(list(container.decode(video=0))) == 25


def test_same_arguments_same_bytes_and_the_seed_changes_the_picture() -> None:
    assert mp4(1, 64, 64, "x") == mp4(1, 64, 64, "x")

    def luma(seed: str) -> bytes:
        with av.open(io.BytesIO(mp4(0.04, 64, 64, seed))) as container:
            return bytes(next(container.decode(video=0)).planes[0])

    assert luma("x") != luma("y")


def test_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError):
        mp4(1, 0, 10, "x")
