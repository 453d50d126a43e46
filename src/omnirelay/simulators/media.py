"""Real, valid media made on the fly for simulators: PNG, JPEG and WEBP images, WAV and MP3 audio.

Everything is pure Python (``zlib``/``struct``) and deterministic: the same arguments give the same bytes, and a
different ``seed`` gives different content, so a test can tell two generations apart and a client can decode the
result with any ordinary decoder.

How each stays cheap enough for a 1024x1024 image in a request handler:
- PNG: the picture is a grid of flat tiles, so a row is a few repeated byte runs and identical rows are built once;
  ``zlib`` then compresses the repetition to a few kilobytes.
- JPEG: baseline, 4:4:4, one flat colour per 8x8 block. A flat block has only a DC coefficient, so no DCT is
  computed: each block codes as a DC difference and an end-of-block, with the standard Annex K Huffman tables.
- WAV: 16-bit mono PCM of a tone whose pitch follows the seed; one period is computed and repeated.
- WEBP: lossless VP8L, the same picture as the PNG: a literal pixel where a tile row starts, LZ77 copies for the
  rest, so a handful of prefix-coded symbols whatever the size.
- MP3: MPEG-1 Layer III, 44.1 kHz mono 64 kbit/s frames with empty side information (silence, which every decoder
  accepts); the seed goes in each frame's ancillary bytes. Length is a whole number of 1152-sample frames.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import struct
import zlib
from array import array

__all__ = ["MP3_SAMPLES_PER_FRAME", "MP3_SAMPLE_RATE", "jpeg", "mp3", "png", "svg", "wav", "webp"]

_TILES = 8
"""The picture is a _TILES x _TILES grid of flat colours (fewer tiles when the image is smaller)."""


def _palette(seed: str, count: int) -> list[tuple[int, int, int]]:
    """``count`` RGB colours derived from the seed (SHA-256 in counter mode)."""
    out: list[tuple[int, int, int]] = []
    block = 0
    stream = b""
    while len(stream) < count * 3:
        stream += hashlib.sha256(f"{seed}\x00{block}".encode()).digest()
        block += 1
    for i in range(count):
        r, g, b = stream[i * 3 : i * 3 + 3]
        out.append((r, g, b))
    return out


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0 or width > 8192 or height > 8192:
        raise ValueError(f"image size {width}x{height} is out of range 1..8192")


def _bounds(length: int, parts: int) -> list[int]:
    """Edges of ``parts`` near-equal spans over ``length`` pixels."""
    return [length * i // parts for i in range(parts + 1)]


def _grid(width: int, height: int, seed: str) -> tuple[list[int], list[int], list[list[tuple[int, int, int]]]]:
    cols = min(_TILES, width)
    rows = min(_TILES, height)
    colours = _palette(seed, cols * rows)
    grid = [colours[r * cols : (r + 1) * cols] for r in range(rows)]
    return _bounds(width, cols), _bounds(height, rows), grid


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, seed: str) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` pixels whose tile colours follow ``seed``."""
    _check_size(width, height)
    xs, ys, grid = _grid(width, height, seed)
    raw = bytearray()
    for r, colours in enumerate(grid):
        row = b"\x00" + b"".join(bytes(c) * (xs[i + 1] - xs[i]) for i, c in enumerate(colours))
        raw += row * (ys[r + 1] - ys[r])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _png_chunk(b"IEND", b"")
    )


# Standard JPEG tables (ITU T.81 Annex K.3): code lengths count (1..16) and symbol values.
_DC_LUMA = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)))
_DC_CHROMA = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)))
# AC tables: only the end-of-block symbol (0x00) is ever emitted, so a one-symbol table is a complete, valid table.
_AC_EOB = ([1] + [0] * 15, [0x00])


def _huffman_codes(spec: tuple[list[int], list[int]]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes (symbol -> (code, bit length)) from a DHT specification."""
    counts, symbols = spec
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            codes[symbols[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


class _BitWriter:
    __slots__ = ("acc", "nbits", "out")

    def __init__(self) -> None:
        self.acc = 0
        self.nbits = 0
        self.out = bytearray()

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.nbits += length
        while self.nbits >= 8:
            self.nbits -= 8
            byte = (self.acc >> self.nbits) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:  # byte stuffing: a literal 0xFF in entropy-coded data is followed by 0x00
                self.out.append(0)
        self.acc &= (1 << self.nbits) - 1

    def flush(self) -> bytes:
        if self.nbits:
            self.write((1 << (8 - self.nbits)) - 1, 8 - self.nbits)  # pad with 1-bits, as T.81 F.1.2.3 asks
        return bytes(self.out)


def _ycbcr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return tuple(min(255, max(0, round(v))) for v in (y, cb, cr))  # type: ignore[return-value]


def _dqt(table_id: int) -> bytes:
    # All-ones quantisation: the DC value is carried exactly (the picture is flat blocks, so quality costs nothing).
    return b"\xff\xdb" + struct.pack(">HB", 67, table_id) + b"\x01" * 64


def _dht(table_class: int, table_id: int, spec: tuple[list[int], list[int]]) -> bytes:
    counts, symbols = spec
    body = bytes([(table_class << 4) | table_id]) + bytes(counts) + bytes(symbols)
    return b"\xff\xc4" + struct.pack(">H", len(body) + 2) + body


def jpeg(width: int, height: int, seed: str) -> bytes:
    """A baseline JFIF JPEG of ``width`` x ``height`` pixels whose block colours follow ``seed``."""
    _check_size(width, height)
    xs, ys, grid = _grid(width, height, seed)
    bw = (width + 7) // 8
    bh = (height + 7) // 8
    # Block (bx, by) takes the colour of the tile holding its top-left pixel; edges of tiles are kept to 8 px.
    col_of = [0] * bw
    t = 0
    for bx in range(bw):
        while t + 1 < len(xs) - 1 and xs[t + 1] <= bx * 8:
            t += 1
        col_of[bx] = t
    dc_luma = _huffman_codes(_DC_LUMA)
    dc_chroma = _huffman_codes(_DC_CHROMA)
    eob_code, eob_len = _huffman_codes(_AC_EOB)[0]
    writer = _BitWriter()
    previous = [0, 0, 0]
    tile_row = 0
    for by in range(bh):
        while tile_row + 1 < len(ys) - 1 and ys[tile_row + 1] <= by * 8:
            tile_row += 1
        # DC coefficient of a flat block is 8 * (value - 128) with unit quantisation.
        dcs = [tuple(8 * (v - 128) for v in _ycbcr(c)) for c in grid[tile_row]]
        for bx in range(bw):
            block = dcs[col_of[bx]]
            for comp in range(3):
                diff = block[comp] - previous[comp]
                previous[comp] = block[comp]
                size = abs(diff).bit_length()
                code, length = (dc_luma if comp == 0 else dc_chroma)[size]
                writer.write(code, length)
                if size:
                    writer.write(diff if diff > 0 else diff + (1 << size) - 1, size)
                writer.write(eob_code, eob_len)
    scan = writer.flush()
    app0 = b"\xff\xe0" + struct.pack(">H5sBBBHHBB", 16, b"JFIF\x00", 1, 1, 0, 1, 1, 0, 0)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + bytes([1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return b"".join(
        [
            b"\xff\xd8",
            app0,
            _dqt(0),
            _dqt(1),
            sof0,
            _dht(0, 0, _DC_LUMA),
            _dht(1, 0, _AC_EOB),
            _dht(0, 1, _DC_CHROMA),
            _dht(1, 1, _AC_EOB),
            sos,
            scan,
            b"\xff\xd9",
        ]
    )


def _pitch(seed: str) -> float:
    """A tone between 220 and 880 Hz picked by the seed."""
    return 220.0 + int.from_bytes(hashlib.sha256(seed.encode()).digest()[:2], "big") % 661


def wav(seconds: float, seed: str = "", sample_rate: int = 24000) -> bytes:
    """A 16-bit mono PCM WAV of ``seconds`` (rounded to whole samples) holding a seed-pitched tone."""
    if seconds < 0 or sample_rate <= 0:
        raise ValueError("seconds must be >= 0 and sample_rate > 0")
    total = round(seconds * sample_rate)
    # Whole periods of an integer number of samples repeat exactly, so one period is computed and tiled.
    period = max(2, round(sample_rate / _pitch(seed)))
    cycle = array("h", (round(8000 * math.sin(2 * math.pi * i / period)) for i in range(period)))
    samples = cycle * (total // period + 1)
    del samples[total:]
    if samples.itemsize != 2:  # pragma: no cover - "h" is 16-bit on every supported platform
        raise RuntimeError("array 'h' is not 16-bit here")
    pcm = samples.tobytes() if struct.pack("=h", 1) == struct.pack("<h", 1) else _swap16(samples)
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _swap16(samples: array) -> bytes:  # pragma: no cover - big-endian hosts only
    copy = array("h", samples)
    copy.byteswap()
    return copy.tobytes()


MP3_SAMPLE_RATE = 44100
MP3_SAMPLES_PER_FRAME = 1152
_MP3_BITRATE = 64000
# MPEG-1 Layer III frame bytes = 144 * bitrate / sample rate (without the padding slot).
_MP3_FRAME_BYTES = 144 * _MP3_BITRATE // MP3_SAMPLE_RATE
# Header: sync 0xFFF, MPEG-1 (11), Layer III (01), no CRC (1); bitrate index 5 = 64 kbit/s, 44.1 kHz (00), no
# padding, private 0; channel mode mono (11), mode extension 00, not copyrighted, original, no emphasis.
_MP3_HEADER = bytes([0xFF, 0xFB, 0x50, 0xC4])
_MP3_SIDE_INFO = 17  # mono MPEG-1: all zero means main_data_begin 0 and empty granules (silence)


def mp3(seconds: float, seed: str = "") -> bytes:
    """An MP3 (MPEG-1 Layer III, 44.1 kHz mono) of ``seconds`` rounded up to whole frames of 1152 samples."""
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    frames = max(1, math.ceil(seconds * MP3_SAMPLE_RATE / MP3_SAMPLES_PER_FRAME - 1e-9))
    ancillary_len = _MP3_FRAME_BYTES - len(_MP3_HEADER) - _MP3_SIDE_INFO
    filler = (hashlib.sha256(seed.encode()).digest() * (ancillary_len // 32 + 1))[:ancillary_len]
    frame = _MP3_HEADER + bytes(_MP3_SIDE_INFO) + filler
    return frame * frames


# ------------------------------------------------------------------------------------------------ WEBP (lossless)
# VP8L bitstream: bits are packed least significant first; a prefix (Huffman) code is read one bit at a time from
# its most significant bit, so codes are written bit-reversed. The picture is coded as one literal pixel per tile
# row start, LZ77 copies of the pixel to the left for the rest of the tile row, and copies of the row above for the
# remaining rows of a band: a handful of symbols whatever the size.

_CODE_LENGTH_ORDER = (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
_MAX_COPY = 4096


class _LsbWriter:
    __slots__ = ("acc", "nbits", "out")

    def __init__(self) -> None:
        self.acc = 0
        self.nbits = 0
        self.out = bytearray()

    def write(self, value: int, length: int) -> None:
        self.acc |= (value & ((1 << length) - 1)) << self.nbits
        self.nbits += length
        while self.nbits >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.nbits -= 8

    def flush(self) -> bytes:
        if self.nbits:
            self.out.append(self.acc & 0xFF)
            self.acc, self.nbits = 0, 0
        return bytes(self.out)


def _huffman_lengths(freqs: dict[int, int], limit: int) -> dict[int, int]:
    """Code lengths of a complete prefix code over the symbols of ``freqs``, none longer than ``limit``."""
    if len(freqs) == 1:
        return {next(iter(freqs)): 0}  # a lone symbol costs no bits in VP8L
    for attempt in (freqs, dict.fromkeys(freqs, 1)):  # equal weights always fit: depth ceil(log2 n)
        heap = [(weight, i, (symbol,)) for i, (symbol, weight) in enumerate(sorted(attempt.items()))]
        heapq.heapify(heap)
        depth = dict.fromkeys(attempt, 0)
        counter = len(heap)
        while len(heap) > 1:
            w1, _, s1 = heapq.heappop(heap)
            w2, _, s2 = heapq.heappop(heap)
            for symbol in s1 + s2:
                depth[symbol] += 1
            heapq.heappush(heap, (w1 + w2, counter, s1 + s2))
            counter += 1
        if max(depth.values()) <= limit:
            return depth
    raise AssertionError("unreachable: equal weights fit any limit above log2 of the alphabet")


def _canonical(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
    """symbol -> (bit-reversed code, length), canonical order by (length, symbol)."""
    codes: dict[int, tuple[int, int]] = {}
    code, previous = 0, 0
    for symbol, length in sorted(((s, n) for s, n in lengths.items() if n), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        previous = length
        codes[symbol] = (int(f"{code:0{length}b}"[::-1], 2), length)
        code += 1
    for symbol, length in lengths.items():
        if not length:
            codes[symbol] = (0, 0)
    return codes


def _write_code(writer: _LsbWriter, freqs: dict[int, int], alphabet: int) -> dict[int, tuple[int, int]]:
    """Write one prefix code for the used symbols and return how to write each."""
    if not freqs:
        freqs = {0: 1}
    symbols = sorted(freqs)
    if len(symbols) <= 2 and symbols[-1] < 256:  # a "simple" code: one or two 8-bit symbols
        writer.write(1, 1)
        writer.write(len(symbols) - 1, 1)
        writer.write(1, 1)  # the first symbol takes 8 bits
        writer.write(symbols[0], 8)
        if len(symbols) == 2:
            writer.write(symbols[1], 8)
            return {symbols[0]: (0, 1), symbols[1]: (1, 1)}
        return {symbols[0]: (0, 0)}
    lengths = _huffman_lengths(freqs, 15)
    sequence: list[tuple[int, int, int]] = []  # (code-length symbol, extra value, extra bits)
    position = 0
    while position < alphabet:
        length = lengths.get(position, 0)
        if length:
            sequence.append((length, 0, 0))
            position += 1
            continue
        run = 1
        while position + run < alphabet and not lengths.get(position + run, 0) and run < 138:
            run += 1
        if run >= 11:
            sequence.append((18, run - 11, 7))
        elif run >= 3:
            sequence.append((17, run - 3, 3))
        else:
            sequence.extend([(0, 0, 0)] * run)
        position += run
    meta_freqs: dict[int, int] = {}
    for symbol, _, _ in sequence:
        meta_freqs[symbol] = meta_freqs.get(symbol, 0) + 1
    meta_lengths = _huffman_lengths(meta_freqs, 7)
    if len(meta_lengths) == 1:
        # A code-length code must hold two symbols to be read back; pair the lone one with an unused length.
        only = next(iter(meta_lengths))
        meta_lengths = {only: 1, (1 if only != 1 else 2): 1}
    meta_codes = _canonical(meta_lengths)
    count = max(4, max(_CODE_LENGTH_ORDER.index(s) for s in meta_lengths) + 1)
    writer.write(0, 1)  # normal code
    writer.write(count - 4, 4)
    for symbol in _CODE_LENGTH_ORDER[:count]:
        writer.write(meta_lengths.get(symbol, 0), 3)
    writer.write(0, 1)  # lengths are given for the whole alphabet
    for symbol, extra, bits in sequence:
        code, length = meta_codes[symbol]
        writer.write(code, length)
        if bits:
            writer.write(extra, bits)
    return _canonical(lengths)


def _prefix(value: int) -> tuple[int, int, int]:
    """(prefix symbol, extra bits count, extra bits) of a length or distance code ``value`` >= 1."""
    d = value - 1
    if d < 4:
        return d, 0, 0
    high = d.bit_length() - 1
    second = (d >> (high - 1)) & 1
    extra_bits = high - 1
    return 2 * high + second, extra_bits, d & ((1 << extra_bits) - 1)


def webp(width: int, height: int, seed: str) -> bytes:
    """A lossless WEBP (VP8L) of ``width`` x ``height`` pixels; the same picture as :func:`png` of that seed."""
    if width > 16384 or height > 16384:
        raise ValueError("WEBP images are at most 16384 pixels a side")
    _check_size(width, height)
    xs, ys, grid = _grid(width, height, seed)
    # Distance codes: 1 is the pixel above, 2 the pixel to the left (VP8L's 2D neighbourhood table).
    ops: list[tuple[str, int, int]] = []  # ("pixel", argb, 0) or ("copy", length, distance code)
    for band, colours in enumerate(grid):
        for i, (r, g, b) in enumerate(colours):
            ops.append(("pixel", (r << 16) | (g << 8) | b, 0))
            run = xs[i + 1] - xs[i] - 1
            while run > 0:
                step = min(run, _MAX_COPY)
                ops.append(("copy", step, 2))
                run -= step
        rest = width * (ys[band + 1] - ys[band] - 1)
        while rest > 0:
            step = min(rest, _MAX_COPY)
            ops.append(("copy", step, 1))
            rest -= step
    green: dict[int, int] = {}
    red: dict[int, int] = {}
    blue: dict[int, int] = {}
    distance: dict[int, int] = {}
    for kind, value, dist in ops:
        if kind == "pixel":
            for table, channel in ((green, (value >> 8) & 0xFF), (red, value >> 16), (blue, value & 0xFF)):
                table[channel] = table.get(channel, 0) + 1
        else:
            symbol = 256 + _prefix(value)[0]
            green[symbol] = green.get(symbol, 0) + 1
            dsymbol = _prefix(dist)[0]
            distance[dsymbol] = distance.get(dsymbol, 0) + 1
    writer = _LsbWriter()
    writer.write(0x2F, 8)
    writer.write(width - 1, 14)
    writer.write(height - 1, 14)
    writer.write(0, 1)  # no alpha
    writer.write(0, 3)  # version
    writer.write(0, 1)  # no transform
    writer.write(0, 1)  # no colour cache
    writer.write(0, 1)  # one prefix-code group
    codes = [
        _write_code(writer, green, 280),
        _write_code(writer, red, 256),
        _write_code(writer, blue, 256),
        _write_code(writer, {255: 1}, 256),
        _write_code(writer, distance, 40),
    ]
    green_codes, red_codes, blue_codes, alpha_codes, distance_codes = codes
    for kind, value, dist in ops:
        if kind == "pixel":
            writer.write(*green_codes[(value >> 8) & 0xFF])
            writer.write(*red_codes[value >> 16])
            writer.write(*blue_codes[value & 0xFF])
            writer.write(*alpha_codes[255])
        else:
            symbol, bits, extra = _prefix(value)
            writer.write(*green_codes[256 + symbol])
            writer.write(extra, bits)
            dsymbol, dbits, dextra = _prefix(dist)
            writer.write(*distance_codes[dsymbol])
            writer.write(dextra, dbits)
    data = writer.flush()
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def svg(width: int, height: int, seed: str) -> bytes:
    """An SVG document of ``width`` x ``height`` user units: the same tile picture as :func:`png`, one ``rect``
    per tile (what a vector style or a vectorizer returns)."""
    _check_size(width, height)
    xs, ys, grid = _grid(width, height, seed)
    rects = [
        f'<rect x="{xs[c]}" y="{ys[r]}" width="{xs[c + 1] - xs[c]}" height="{ys[r + 1] - ys[r]}" '
        f'fill="#{red:02x}{green:02x}{blue:02x}"/>'
        for r, colours in enumerate(grid)
        for c, (red, green, blue) in enumerate(colours)
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">' + "".join(rects) + "</svg>"
    ).encode()
