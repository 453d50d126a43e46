"""A tiny MP4 writer for the video simulators: real, decodable H.264 in a real ISO BMFF container.

The simulators hand out result URLs; a client that downloads one should get a file that players open, not bytes
that merely start with ``ftyp``. So the track is genuine H.264 Baseline: one IDR picture whose macroblocks are
``I_PCM`` (raw samples, no transform or entropy coder to write), coloured in blocks chosen by ``seed``, followed by
P pictures in which every macroblock is skipped (a still picture that lasts ``seconds``). The container is
``ftyp`` + ``moov`` (``mvhd``, one video ``trak`` with ``avc1``/``avcC`` and full sample tables) + ``mdat``, with
``moov`` first so the file plays while it downloads.

Size grows with the picture (about 390 bytes per 16x16 block, once), barely with the duration.
"""

from __future__ import annotations

import hashlib
import re
import struct
from functools import lru_cache

FPS = 25
TIMESCALE = 12_800
"""Media timescale of the track; one frame lasts ``TIMESCALE // FPS`` units (the value ffmpeg picks for 25 fps)."""
MOVIE_TIMESCALE = 1_000
_FRAME_TICKS = TIMESCALE // FPS
_MAX_SIDE = 4096
_IDENTITY_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)


class _Bits:
    """MSB-first bit writer with the Exp-Golomb codes of H.264 (``ue(v)``, ``se(v)``)."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._acc = 0
        self._n = 0

    def u(self, bits: int, value: int) -> None:
        for shift in range(bits - 1, -1, -1):
            self._acc = (self._acc << 1) | ((value >> shift) & 1)
            self._n += 1
            if self._n == 8:
                self._out.append(self._acc)
                self._acc = 0
                self._n = 0

    def ue(self, value: int) -> None:
        code = value + 1
        length = code.bit_length()
        self.u(length - 1, 0)
        self.u(length, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while self._n:
            self.u(1, 0)

    def raw(self, data: bytes) -> None:
        """Whole bytes; the writer must be byte-aligned."""
        assert self._n == 0
        self._out += data

    def trailing(self) -> bytes:
        """``rbsp_trailing_bits``: a stop bit, then zeros to the byte boundary."""
        self.u(1, 1)
        self.align_zero()
        return bytes(self._out)


_NEEDS_ESCAPE = re.compile(rb"\x00\x00(?=[\x00-\x03])")


def _nal(nal_type: int, rbsp: bytes, ref_idc: int = 3) -> bytes:
    """A NAL unit with emulation prevention: no ``00 00 0x`` (x <= 3) may appear inside it."""
    return bytes([(ref_idc << 5) | nal_type]) + _NEEDS_ESCAPE.sub(b"\x00\x00\x03", rbsp)


def _level_idc(mbs: int) -> int:
    # Smallest level whose MaxFS (macroblocks per frame) fits the picture at 25 fps (H.264 Table A-1).
    for level, max_fs in ((21, 792), (30, 1620), (31, 3600), (32, 5120), (40, 8192), (50, 22080), (51, 36864)):
        if mbs <= max_fs:
            return level
    return 52


def _sps(mb_w: int, mb_h: int, width: int, height: int) -> bytes:
    bits = _Bits()
    bits.u(8, 66)  # profile_idc: Baseline
    bits.u(8, 0xC0)  # constraint_set0 and set1: also conforms to Main
    bits.u(8, _level_idc(mb_w * mb_h))
    bits.ue(0)  # seq_parameter_set_id
    bits.ue(0)  # log2_max_frame_num_minus4: frame_num is 4 bits, wraps at 16
    bits.ue(2)  # pic_order_cnt_type 2: output order is decode order, nothing to send per slice
    bits.ue(1)  # max_num_ref_frames
    bits.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(mb_w - 1)
    bits.ue(mb_h - 1)
    bits.u(1, 1)  # frame_mbs_only_flag
    bits.u(1, 1)  # direct_8x8_inference_flag
    crop_right, crop_bottom = (mb_w * 16 - width) // 2, (mb_h * 16 - height) // 2  # 4:2:0 crops in 2-pixel units
    if crop_right or crop_bottom:
        bits.u(1, 1)
        for offset in (0, crop_right, 0, crop_bottom):
            bits.ue(offset)
    else:
        bits.u(1, 0)
    bits.u(1, 0)  # vui_parameters_present_flag
    return _nal(7, bits.trailing())


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pic_parameter_set_id
    bits.ue(0)  # seq_parameter_set_id
    bits.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    bits.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    bits.ue(0)  # num_slice_groups_minus1
    bits.ue(0)  # num_ref_idx_l0_default_active_minus1
    bits.ue(0)  # num_ref_idx_l1_default_active_minus1
    bits.u(1, 0)  # weighted_pred_flag
    bits.u(2, 0)  # weighted_bipred_idc
    bits.se(0)  # pic_init_qp_minus26
    bits.se(0)  # pic_init_qs_minus26
    bits.se(0)  # chroma_qp_index_offset
    bits.u(1, 0)  # deblocking_filter_control_present_flag
    bits.u(1, 0)  # constrained_intra_pred_flag
    bits.u(1, 0)  # redundant_pic_cnt_present_flag
    return _nal(8, bits.trailing())


def _palette(seed: str) -> list[tuple[int, int, int]]:
    """Eight Y/Cb/Cr colours from the seed, every sample within 16..235 (so no byte is ever zero)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return [
        (16 + digest[i] * 219 // 255, 16 + digest[i + 8] * 224 // 255, 16 + digest[i + 16] * 224 // 255)
        for i in range(8)
    ]


def _idr_slice(mb_w: int, mb_h: int, seed: str) -> bytes:
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # slice_type: I, and every slice of the picture is I
    bits.ue(0)  # pic_parameter_set_id
    bits.u(4, 0)  # frame_num
    bits.ue(0)  # idr_pic_id
    bits.u(1, 0)  # no_output_of_prior_pics_flag
    bits.u(1, 0)  # long_term_reference_flag
    bits.se(0)  # slice_qp_delta
    palette = _palette(seed)
    blocks: dict[int, bytes] = {}
    for mb_y in range(mb_h):
        for mb_x in range(mb_w):
            # Diagonal bands of the palette: a recognisable picture that differs per seed.
            colour = (mb_x // 2 + mb_y // 2) % len(palette)
            if colour not in blocks:
                y, cb, cr = palette[colour]
                blocks[colour] = bytes([y]) * 256 + bytes([cb]) * 64 + bytes([cr]) * 64
            bits.ue(25)  # mb_type I_PCM
            bits.align_zero()  # pcm_alignment_zero_bits
            bits.raw(blocks[colour])
    return _nal(5, bits.trailing())


def _skip_slice(frame_num: int, mbs: int) -> bytes:
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(5)  # slice_type: P, and every slice of the picture is P
    bits.ue(0)  # pic_parameter_set_id
    bits.u(4, frame_num % 16)
    bits.u(1, 0)  # num_ref_idx_active_override_flag
    bits.u(1, 0)  # ref_pic_list_modification_flag_l0
    bits.u(1, 0)  # adaptive_ref_pic_marking_mode_flag
    bits.se(0)  # slice_qp_delta
    bits.ue(mbs)  # mb_skip_run: the whole picture repeats the previous one
    return _nal(1, bits.trailing(), ref_idc=2)


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _avc1(width: int, height: int, sps: bytes, pps: bytes) -> bytes:
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),  # version, profile, compat, level, 4-byte lengths, 1 SPS
        struct.pack(">H", len(sps)),
        sps,
        bytes([1]),
        struct.pack(">H", len(pps)),
        pps,
    )
    return _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x00480000, 0x00480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes([len(b"omnirelay")]) + b"omnirelay".ljust(31, b"\0"),
        struct.pack(">Hh", 0x0018, -1),
        avcc,
    )


def _moov(width: int, height: int, sizes: list[int], chunk_offset: int, sps: bytes, pps: bytes) -> bytes:
    frames = len(sizes)
    media_duration = frames * _FRAME_TICKS
    movie_duration = media_duration * MOVIE_TIMESCALE // TIMESCALE
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, movie_duration),
        struct.pack(">IH", 0x00010000, 0x0100),
        bytes(10),
        _IDENTITY_MATRIX,
        bytes(24),
        struct.pack(">I", 2),  # next_track_ID
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, 1, 0, movie_duration),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),
        _IDENTITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, media_duration, 0x55C4, 0))  # "und"
    hdlr = _full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0")
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), _avc1(width, height, sps, pps)),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, frames, _FRAME_TICKS)),
        _full_box(b"stss", 0, 0, struct.pack(">II", 1, 1)),  # only the first sample is a sync sample
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1)),  # all samples in one chunk
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, frames), struct.pack(f">{frames}I", *sizes)),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)),
    )
    minf = _box(b"minf", vmhd, dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    return _box(b"moov", mvhd, trak)


@lru_cache(maxsize=32)
def mp4(seconds: float, width: int, height: int, seed: str) -> bytes:
    """A playable H.264 MP4 of ``width`` x ``height`` lasting ``seconds`` (at 25 fps, at least one frame).

    Width and height are rounded up to even numbers (4:2:0 video has no odd sizes) and capped at 4096.
    The same arguments always give the same bytes.
    """
    if seconds < 0 or width <= 0 or height <= 0:
        raise ValueError("mp4 needs seconds >= 0 and a positive width and height")
    width = min(_MAX_SIDE, width + width % 2)
    height = min(_MAX_SIDE, height + height % 2)
    mb_w, mb_h = (width + 15) // 16, (height + 15) // 16
    sps, pps = _sps(mb_w, mb_h, width, height), _pps()
    frames = max(1, round(seconds * FPS))
    samples = [_idr_slice(mb_w, mb_h, seed)] + [_skip_slice(i, mb_w * mb_h) for i in range(1, frames)]
    samples = [struct.pack(">I", len(nal)) + nal for nal in samples]  # AVCC framing: 4-byte length prefixes
    sizes = [len(s) for s in samples]
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")
    moov_size = len(_moov(width, height, sizes, 0, sps, pps))
    mdat_header = struct.pack(">I4s", 8 + sum(sizes), b"mdat")
    moov = _moov(width, height, sizes, len(ftyp) + moov_size + len(mdat_header), sps, pps)
    return ftyp + moov + mdat_header + b"".join(samples)
