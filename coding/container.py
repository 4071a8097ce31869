"""The project's bitstream container: one layout for every codec, documented in docs/bitstream.md.

    magic "LZ" | format version (u8) | codec id (u8) | header length (varint) | header
    | number of sections (u8) | length of each section (varint each)
    | CRC-16 of each section (u16 each; version >= 2) | CRC-16 | sections

The codec-specific header (image size, architecture, quantisation steps), the section
lengths and the section checksums are covered by the last CRC-16 (CCITT), so a damaged
header is reported as such rather than read as absurd sizes. Each section has its own
CRC-16 (format version 2): a damaged payload is refused before any decoding starts (2
bytes per section; every byte counts in bpp). The decoders must still survive any
content, e.g. a crafted file with valid checksums: their work is bounded by the header
(coding/range_coding.py). Version 1 files (no section checksums) are still read. All
integers are big-endian; varints are LEB128 (7 bits per byte, low bits first) of at most
5 bytes.
"""

import binascii
import dataclasses
import struct

from common.errors import BitstreamError

MAGIC = b"LZ"
FORMAT_VERSION = 3
# 1: no section checksums; tfc's escape code in the range-coded sections.
# 2: a CRC-16 per section; escapes coded by coding/range_coding.py (bounded decoding).
# 3: a C3 header starts with an architecture preset's number (coding/c3/presets.py).
# Codec ids; for the amortised codecs the decoder is the trained run directory.
CODEC_IDS = {
    "c3": 1,
    "bls2017": 2,
    "mbt2018_mean": 3,
    "jpegl": 4,
    "two_layer_syn": 5,
    "two_layer_syn2": 6,
    "c3_lossless": 7,
    "rc_hevc": 8,
    "rc_c3": 9,
    "qres_vae": 10,
    "qarv": 11,
    "c3_video": 12,
}
MAX_SECTIONS = 255  # a u8; C3 video has one section per patch
_MAX_VARINT_BYTES = 5


def encode_varint(value: int) -> bytes:
    if value < 0 or value >= 2 ** (7 * _MAX_VARINT_BYTES):
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class Reader:
    """Reads fields from bytes; running past the end is a BitstreamError."""

    def __init__(self, data: bytes, what: str):
        self.data = bytes(data)
        self.position = 0
        self.what = what

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self.position + n > len(self.data):
            raise BitstreamError(
                f"{self.what}: truncated at byte {self.position} while reading {field} "
                f"({n} bytes needed, {len(self.data) - self.position} left)."
            )
        chunk = self.data[self.position : self.position + n]
        self.position += n
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return struct.unpack(">H", self.take(2, field))[0]

    def f32(self, field: str) -> float:
        return struct.unpack(">f", self.take(4, field))[0]

    def varint(self, field: str) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            byte = self.u8(field)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise BitstreamError(f"{self.what}: {field} is not a valid varint.")

    def image_size(self, max_side: int = 1 << 15) -> tuple[int, int]:
        """(height, width) as two varints, each in 1 .. max_side."""
        height, width = self.varint("image height"), self.varint("image width")
        if not (0 < height <= max_side and 0 < width <= max_side):
            raise BitstreamError(f"{self.what}: invalid image size {height}x{width}.")
        return height, width

    def remaining(self) -> int:
        return len(self.data) - self.position

    def expect_end(self) -> None:
        if self.remaining():
            raise BitstreamError(f"{self.what}: {self.remaining()} unexpected trailing bytes.")


def pack_u16(value: int) -> bytes:
    return struct.pack(">H", value)


def pack_f32(value: float) -> bytes:
    return struct.pack(">f", value)


def f32(value: float) -> float:
    """The float32 value that the header stores for `value`."""
    return struct.unpack(">f", struct.pack(">f", value))[0]


@dataclasses.dataclass(frozen=True)
class Container:
    codec: str
    header: bytes
    sections: tuple[bytes, ...]
    version: int = FORMAT_VERSION  # of a parsed file; new files are always the latest

    def to_bytes(self) -> bytes:
        if self.codec not in CODEC_IDS:
            raise ValueError(f"Unknown codec {self.codec!r}.")
        if len(self.sections) > MAX_SECTIONS:
            raise ValueError(f"At most {MAX_SECTIONS} sections.")
        if self.version != FORMAT_VERSION:
            raise ValueError(f"Files are written in format version {FORMAT_VERSION} only.")
        head = bytearray(MAGIC)
        head += bytes([FORMAT_VERSION, CODEC_IDS[self.codec]])
        head += encode_varint(len(self.header)) + self.header
        head += bytes([len(self.sections)])
        for section in self.sections:
            head += encode_varint(len(section))
        for section in self.sections:
            head += pack_u16(binascii.crc_hqx(section, 0))
        head += pack_u16(binascii.crc_hqx(bytes(head), 0))
        return bytes(head) + b"".join(self.sections)

    def overhead_bytes(self) -> int:
        """Bytes of the file that are not section payloads (the container's header)."""
        return len(self.to_bytes()) - sum(len(s) for s in self.sections)


def parse(data: bytes, what: str = "bitstream") -> Container:
    """Parses and checks a container; raises BitstreamError for anything malformed."""
    if not data:
        raise BitstreamError(f"{what}: empty file.")
    reader = Reader(data, what)
    if reader.take(len(MAGIC), "magic") != MAGIC:
        raise BitstreamError(f"{what}: not a bitstream of this project (wrong magic bytes).")
    version = reader.u8("format version")
    if version > FORMAT_VERSION:
        raise BitstreamError(
            f"{what}: format version {version} is newer than this decoder ({FORMAT_VERSION}); "
            "update the software."
        )
    if version < 1:
        raise BitstreamError(f"{what}: invalid format version {version}.")
    codec_id = reader.u8("codec id")
    codecs = {v: k for k, v in CODEC_IDS.items()}
    if codec_id not in codecs:
        raise BitstreamError(f"{what}: unknown codec id {codec_id}.")
    header = reader.take(reader.varint("header length"), "header")
    num_sections = reader.u8("number of sections")
    if num_sections > MAX_SECTIONS:
        raise BitstreamError(f"{what}: {num_sections} sections (at most {MAX_SECTIONS}).")
    lengths = [reader.varint(f"length of section {i}") for i in range(num_sections)]
    checksums = []
    if version >= 2:
        checksums = [reader.u16(f"checksum of section {i}") for i in range(num_sections)]
    expected_crc = binascii.crc_hqx(data[: reader.position], 0)
    if reader.u16("header checksum") != expected_crc:
        raise BitstreamError(f"{what}: header checksum mismatch (damaged file).")
    sections = tuple(reader.take(n, f"section {i}") for i, n in enumerate(lengths))
    reader.expect_end()
    checked = sections[: len(checksums)]  # version 1 has none
    for i, (section, checksum) in enumerate(zip(checked, checksums, strict=True)):
        if binascii.crc_hqx(section, 0) != checksum:
            raise BitstreamError(f"{what}: section {i} checksum mismatch (damaged file).")
    return Container(codecs[codec_id], header, sections, version)
