"""How long an uploaded audio file plays, read from its own bytes: the clock that per-second billing trusts.

A client's word for the duration is never used. Each reader looks at the container's structure only (no decoding)
and returns ``None`` rather than guess when the bytes do not add up:

- WAV (RIFF/RF64 ``WAVE``): ``data`` chunk size over the ``fmt`` byte rate.
- MP3 (MPEG-1/2/2.5 Layer III, optional ID3v2 tag): the sum of every frame's samples, walking frame headers (so
  VBR files are exact). A file where fewer than two frames chain up is not taken for MP3.
- FLAC: total samples over sample rate from ``STREAMINFO``.
- Ogg (Vorbis, Opus): the last page's granule position over the sample rate (Opus: 48 kHz, less its pre-skip).
- MP4/M4A: the ``mvhd`` box's duration over its time scale.
- WebM/Matroska: the Segment Info ``Duration`` times its ``TimecodeScale``, when the muxer wrote one (a live
  recording, such as a browser's MediaRecorder, often does not).
Anything else: ``None``. The caller then falls back to :func:`estimated_seconds`.
"""

from __future__ import annotations

import struct
from decimal import Decimal
from fractions import Fraction

__all__ = ["FALLBACK_BYTES_PER_SECOND", "audio_seconds", "estimated_seconds"]

FALLBACK_BYTES_PER_SECOND = 2000
"""For a file whose duration cannot be read: assume 16 kbit/s, lower than any usual speech encoding (Opus voice is
24-32 kbit/s, MP3 64+), so the estimate errs on the long side and a client cannot shorten its bill by sending a
container the gateway does not read."""


def audio_seconds(data: bytes) -> Fraction | None:
    """The playing time of ``data`` in seconds, or ``None`` when its container is unknown or inconsistent."""
    for reader in (_wav, _flac, _ogg, _mp4, _webm, _mp3):
        try:
            seconds = reader(data)
        except (struct.error, IndexError, ValueError, ZeroDivisionError):
            seconds = None
        if seconds is not None:
            return seconds
    return None


def estimated_seconds(size: int) -> Fraction:
    """The billing fallback for a file whose duration cannot be read: its size at :data:`FALLBACK_BYTES_PER_SECOND`."""
    return Fraction(max(size, 0), FALLBACK_BYTES_PER_SECOND)


def _wav(data: bytes) -> Fraction | None:
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return None
    pos = 12
    byte_rate = 0
    data_size: int | None = None
    ds64_size: int | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"ds64" and size >= 24:
            ds64_size = struct.unpack_from("<Q", data, body + 8)[0]
        elif chunk_id == b"fmt " and size >= 16:
            byte_rate = struct.unpack_from("<I", data, body + 8)[0]
        elif chunk_id == b"data":
            if size == 0xFFFFFFFF and ds64_size is not None:
                size = ds64_size
            # A streamed WAV may leave the size unset (0 or 0xFFFFFFFF): what is present is what plays.
            present = len(data) - body
            data_size = present if size in (0, 0xFFFFFFFF) or size > present else size
            break
        pos = body + size + (size & 1)
    if data_size is None or byte_rate <= 0:
        return None
    return Fraction(data_size, byte_rate)


# MPEG audio: bitrates (kbit/s) for Layer III by version (1 = MPEG-1, 2 = MPEG-2 and 2.5) and sample rates.
_MP3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


def _mp3_frame(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(frame length in bytes, samples, sample rate) of a Layer III frame header at ``pos``."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version_bits = (data[pos + 1] >> 3) & 3
    layer_bits = (data[pos + 1] >> 1) & 3
    if version_bits == 1 or layer_bits != 1:  # reserved version, or not Layer III
        return None
    bitrate_index = data[pos + 2] >> 4
    rate_index = (data[pos + 2] >> 2) & 3
    if bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version_bits == 3
    bitrate = _MP3_BITRATES[1 if mpeg1 else 2][bitrate_index] * 1000
    rate = _MP3_RATES[version_bits][rate_index]
    padding = (data[pos + 2] >> 1) & 1
    samples = 1152 if mpeg1 else 576
    length = samples // 8 * bitrate // rate + padding
    return length, samples, rate


def _mp3(data: bytes) -> Fraction | None:
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        pos = 10 + size + (10 if data[5] & 0x10 else 0)
    # The first header may follow a little junk; look within the first few KiB only.
    limit = min(len(data), pos + 4096)
    while pos < limit:
        frame = _mp3_frame(data, pos)
        if frame is not None:
            following = _mp3_frame(data, pos + frame[0])
            if following is not None or pos + frame[0] == len(data):
                break
        pos += 1
    else:
        return None
    samples_by_rate: dict[int, int] = {}  # integer sums: a Fraction per frame is too slow for a 25 MB file
    frames = 0
    while True:
        frame = _mp3_frame(data, pos)
        if frame is None:
            break
        length, samples, rate = frame
        if pos + length > len(data):
            break  # a truncated last frame does not play
        samples_by_rate[rate] = samples_by_rate.get(rate, 0) + samples
        frames += 1
        pos += length
    if frames < 2 and not (frames == 1 and pos == len(data)):
        return None
    return sum((Fraction(n, rate) for rate, n in samples_by_rate.items()), Fraction(0))


def _flac(data: bytes) -> Fraction | None:
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        pos = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
    if data[pos : pos + 4] != b"fLaC":
        return None
    block = pos + 4
    if data[block] & 0x7F != 0:  # the first metadata block must be STREAMINFO
        return None
    info = data[block + 4 : block + 4 + 34]
    if len(info) < 18:
        return None
    packed = int.from_bytes(info[10:18], "big")
    rate = packed >> 44
    total_samples = packed & ((1 << 36) - 1)
    if rate == 0 or total_samples == 0:
        return None  # an unknown length (streamed FLAC) is not guessed
    return Fraction(total_samples, rate)


def _ogg(data: bytes) -> Fraction | None:
    if data[:4] != b"OggS" or len(data) < 28:
        return None
    segments = data[26]
    packet = 27 + segments
    head = data[packet : packet + 19]
    if head[:7] == b"\x01vorbis":
        rate = struct.unpack_from("<I", head, 12)[0]
        skip = 0
    elif head[:8] == b"OpusHead":
        rate = 48000  # Opus granule positions always count 48 kHz samples
        skip = struct.unpack_from("<H", head, 10)[0]
    else:
        return None
    last = data.rfind(b"OggS")
    if last < 0 or last + 14 > len(data):
        return None
    granule = struct.unpack_from("<q", data, last + 6)[0]
    if rate <= 0 or granule <= skip:
        return None
    return Fraction(granule - skip, rate)


def _mp4(data: bytes) -> Fraction | None:
    if data[4:8] != b"ftyp":
        return None
    moov = _box(data, 0, len(data), b"moov")
    if moov is None:
        return None
    mvhd = _box(data, moov[0], moov[1], b"mvhd")
    if mvhd is None:
        return None
    start = mvhd[0]
    version = data[start]
    if version == 1:
        scale, duration = struct.unpack_from(">IQ", data, start + 20)
    else:
        scale, duration = struct.unpack_from(">II", data, start + 12)
    if scale == 0 or duration in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return None
    return Fraction(duration, scale)


def _box(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(payload start, payload end) of the first ``kind`` box among the boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, box_kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return None
        if box_kind == kind:
            return pos + header, min(pos + size, end)
        pos += size
    return None


_EBML = 0x1A45DFA3
_SEGMENT = 0x18538067
_INFO = 0x1549A966
_TIMECODE_SCALE = 0x2AD7B1
_DURATION = 0x4489
_CLUSTER = 0x1F43B675


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, length, all ones) of an EBML variable-size integer at ``pos`` (IDs keep their marker bit)."""
    first = data[pos]
    if first == 0:
        raise ValueError("vint longer than 8 bytes")
    length = 9 - first.bit_length()
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    if pos + length > len(data):
        raise IndexError("vint past the end")
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, length, unknown


def _ebml_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, payload start, payload end) of the elements in ``data[start:end]``, stopping at the first Cluster."""
    found = []
    pos = start
    while pos < end:
        element, id_length, _ = _vint(data, pos, keep_marker=True)
        size, size_length, unknown = _vint(data, pos + id_length, keep_marker=False)
        body = pos + id_length + size_length
        stop = end if unknown else min(body + size, end)
        found.append((element, body, stop))
        if element == _CLUSTER:
            break
        pos = stop
    return found


def _webm(data: bytes) -> Fraction | None:
    if data[:4] != b"\x1a\x45\xdf\xa3":
        return None
    top = _ebml_children(data, 0, len(data))
    segment = next((c for c in top if c[0] == _SEGMENT), None)
    if segment is None:
        return None
    info = next((c for c in _ebml_children(data, segment[1], segment[2]) if c[0] == _INFO), None)
    if info is None:
        return None
    scale = 1_000_000
    duration: float | None = None
    for element, start, stop in _ebml_children(data, info[1], info[2]):
        if element == _TIMECODE_SCALE and 0 < stop - start <= 8:
            scale = int.from_bytes(data[start:stop], "big")
        elif element == _DURATION and stop - start in (4, 8):
            duration = struct.unpack(">f" if stop - start == 4 else ">d", data[start:stop])[0]
    if duration is None or not duration > 0 or scale <= 0 or duration == float("inf"):
        return None
    return Fraction(Decimal(repr(duration))) * scale / 1_000_000_000
