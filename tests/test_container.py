"""The bitstream container: round trip and a clear BitstreamError for every kind of damage."""

import pytest

from coding.container import (
    FORMAT_VERSION,
    BitstreamError,
    Container,
    Reader,
    encode_varint,
    parse,
)
from tests.helpers import version_1_bytes


def sample() -> Container:
    return Container("c3", b"header-bytes", (b"networks", b"", b"latents" * 40))


def test_round_trip():
    data = sample().to_bytes()
    assert parse(data) == sample()
    assert sample().overhead_bytes() == len(data) - len(b"networks") - 7 * 40


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**20, 2**35 - 1])
def test_varint_round_trip(value):
    assert Reader(encode_varint(value), "t").varint("v") == value


def test_varint_too_long_is_an_error():
    with pytest.raises(BitstreamError, match="varint"):
        Reader(b"\xff" * 6, "t").varint("v")


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: b"", "empty file"),
        (lambda d: b"XX" + d[2:], "wrong magic"),
        (lambda d: d[:2] + bytes([FORMAT_VERSION + 1]) + d[3:], "newer than this decoder"),
        (lambda d: d[:3] + b"\x63" + d[4:], "unknown codec"),
        (lambda d: d[:5], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\x00", "trailing"),
        (lambda d: flip(d, 6), "checksum"),
    ],
)
def test_damage_is_a_bitstream_error(mutate, message):
    with pytest.raises(BitstreamError, match=message):
        parse(mutate(sample().to_bytes()))


@pytest.mark.parametrize("section", [0, 2])
def test_a_damaged_section_is_refused_before_decoding(section):
    data = bytearray(sample().to_bytes())
    start = len(data) - sum(len(s) for s in sample().sections)
    offset = start + sum(len(s) for s in sample().sections[:section])
    data[offset + 3] ^= 0x10
    with pytest.raises(BitstreamError, match=f"section {section} checksum mismatch"):
        parse(bytes(data))


def test_version_1_files_are_still_read():
    old = version_1_bytes(sample())
    parsed = parse(old)
    assert parsed.version == 1 and parsed.sections == sample().sections
    assert len(sample().to_bytes()) == len(old) + 2 * len(sample().sections)
    assert FORMAT_VERSION == 3 and parse(sample().to_bytes()).version == 3
