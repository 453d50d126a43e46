"""Multipart bodies as the official SDK's HTTP client writes them: read in place, one field rewritten, files intact."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.formats.multipart import (
    MultipartError,
    MultipartReader,
    PartData,
    PartHead,
    boundary_of,
    parse_multipart,
    replace_field,
)


def encoded(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://x/",
        data=fields,
        files={k: (f"{k}.bin", v, "application/octet-stream") for k, v in files.items()},
    )
    return request.read(), request.headers["content-type"]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_[]", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(names, st.text(max_size=40), max_size=4),
    st.dictionaries(names, st.binary(max_size=600), min_size=1, max_size=3),
    st.text(min_size=1, max_size=30),
)
def test_round_trip_and_rewrite(fields: dict[str, str], files: dict[str, bytes], model: str) -> None:
    fields = {"x_" + k: v for k, v in fields.items()}
    files = {"f_" + k: v for k, v in files.items()}
    raw, content_type = encoded({"model": "m", **fields}, files)
    form = parse_multipart(raw, content_type)
    assert form.field("model") == "m"
    for name, value in fields.items():
        assert form.field(name) == value
    for name, data in files.items():
        (part,) = form.files(name)
        assert part.data == data and part.filename == f"{name}.bin"
    rewritten = parse_multipart(replace_field(raw, form, "model", model), content_type)
    assert rewritten.field("model") == model
    assert [p.data for p in rewritten.parts if p.is_file] == [p.data for p in form.parts if p.is_file]


def test_missing_field_is_added() -> None:
    raw, content_type = encoded({"prompt": "hi"}, {"image": b"\x89PNG data"})
    form = parse_multipart(raw, content_type)
    added = parse_multipart(replace_field(raw, form, "model", "dall-e-2"), content_type)
    assert added.field("model") == "dall-e-2" and added.field("prompt") == "hi"
    assert added.files("image")[0].data == b"\x89PNG data"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'--XYZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue', "multipart/form-data; boundary=XYZ"),
        (b"no boundary here", "multipart/form-data; boundary=XYZ"),
        (b"--XYZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XYZ--\r\n", "multipart/form-data; boundary=XYZ"),
        (b"--XYZ--\r\n", "multipart/form-data; boundary=XYZ"),
        (b"{}", "application/json"),
        (b"--XYZ\r\n\r\n", "multipart/form-data"),
    ],
)
def test_malformed(body: bytes, content_type: str) -> None:
    with pytest.raises(MultipartError):
        parse_multipart(body, content_type)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(names, st.binary(min_size=0, max_size=3000), min_size=1, max_size=3),
    st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=40),
)
def test_fed_in_any_chunks_the_reader_sees_the_same_parts(files: dict[str, bytes], cuts: list[int]) -> None:
    """What arrives in pieces (a network read at a time) parses as the whole body does."""
    raw, content_type = encoded({"model": "m"}, files)
    reader = MultipartReader(boundary_of(content_type))
    heads: list[PartHead] = []
    data: dict[str, bytearray] = {}
    position, sizes = 0, iter(cuts * (len(raw) // max(sum(cuts), 1) + 1))
    while position < len(raw):
        size = next(sizes)
        for event in reader.feed(raw[position : position + size]):
            if isinstance(event, PartHead):
                heads.append(event)
                data[event.name] = bytearray()
            elif isinstance(event, PartData):
                data[heads[-1].name] += event.data
        position += size
    reader.close()
    assert [h.name for h in heads] == ["model", *files]
    assert bytes(data["model"]) == b"m"
    for name, content in files.items():
        assert bytes(data[name]) == content


def test_a_body_cut_short_is_refused_at_its_end() -> None:
    raw, content_type = encoded({"model": "m"}, {"image": b"\x89PNG" * 100})
    reader = MultipartReader(boundary_of(content_type))
    reader.feed(raw[:-20])
    with pytest.raises(MultipartError, match="closing boundary"):
        reader.close()
