"""Entropy coding of the quantised network parameters of a per-image codec.

C3 (Kim et al. 2023) estimates the cost of each quantised parameter array with a
zero-mean discretised Laplace; Cool-chic writes its weights with exp-Golomb codes. We do
both for real and keep, per tensor, whichever is smaller, choosing the Laplace scale (a
row of `coding.laplace_tables`, offset 0) or the exp-Golomb order that minimises the
exact cost. Section layout (docs/bitstream.md):

    one code byte per tensor | varint length of the range-coded part | range-coded part
    | exp-Golomb bits (MSB first, zero-padded to a byte)

A code byte below `EXP_GOLOMB_BASE` is a Laplace scale index; `EXP_GOLOMB_BASE + k` is
exp-Golomb order k of the zigzag-mapped integer (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...).
"""

import functools

import numpy as np

from coding import laplace_tables as lt
from coding.container import Reader, encode_varint
from coding.range_coding import escape_bits, exponents
from common.errors import BitstreamError

EXP_GOLOMB_BASE = 200
MAX_EXP_GOLOMB_ORDER = 31
_ZERO_OFFSET_BUCKET = lt.OFFSET_BUCKETS // 2  # the row centred exactly on 0
_MAX_PREFIX_ZEROS = 40


def zigzag(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.int64)
    return np.where(values >= 0, 2 * values, -2 * values - 1)


def unzigzag(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, np.int64)
    return np.where(codes % 2 == 0, codes // 2, -(codes + 1) // 2)


def exp_golomb_bits(values: np.ndarray, order: int) -> int:
    """Bits of the order-k exp-Golomb codes of signed integers (zigzag-mapped)."""
    q = (zigzag(values) >> order) + 1
    lengths = np.floor(np.log2(q)).astype(np.int64) + 1
    return int(np.sum(2 * lengths - 1 + order))


def _laplace_row(scale_index: int) -> int:
    return lt.row_index(scale_index, _ZERO_OFFSET_BUCKET)


@functools.lru_cache(maxsize=1)
def _zero_offset_rows() -> tuple[np.ndarray, np.ndarray]:
    """The Laplace rows a tensor can use (offset 0, every scale): their half widths K
    and, padded into one array, the bits of each symbol (escape at 2K + 1)."""
    tables = lt.tables()
    rows = np.asarray([_laplace_row(s) for s in range(lt.NUM_SCALES)])
    widths = tables.half_widths[rows].astype(np.int64)
    padded = np.zeros((len(rows), 2 * int(widths.max()) + 2))
    for i, row in enumerate(rows):
        padded[i, : 2 * widths[i] + 2] = tables.symbol_bits[row]
    return widths, padded


def laplace_bits(values: np.ndarray) -> np.ndarray:
    """Bits of `values` coded with each Laplace scale (offset-0 rows): `tables().bits`
    for every scale index at once, from the histogram of the distinct values."""
    widths, symbol_bits = _zero_offset_rows()
    distinct, counts = np.unique(np.asarray(values, np.int64).ravel(), return_counts=True)
    k = widths[:, None]
    inside = np.abs(distinct)[None, :] <= k
    index = np.where(inside, distinct[None, :] + k, 2 * k + 1)  # escapes: the escape symbol
    bits = np.take_along_axis(symbol_bits, index, axis=1)
    outside = ~inside
    if outside.any():  # the escaped values' exponent and mantissa
        shifted = np.broadcast_to(distinct[None, :] + k, bits.shape)
        escape = np.broadcast_to(2 * k + 1, bits.shape)
        bits[outside] += escape_bits(shifted[outside], escape[outside])
    return bits @ counts.astype(np.float64)


def exp_golomb_orders_bits(values: np.ndarray) -> np.ndarray:
    """`exp_golomb_bits` of `values` for every order 0 .. MAX_EXP_GOLOMB_ORDER."""
    distinct, counts = np.unique(zigzag(np.asarray(values).ravel()), return_counts=True)
    orders = np.arange(MAX_EXP_GOLOMB_ORDER + 1)[:, None]
    q = (distinct[None, :] >> orders) + 1
    lengths = exponents(q) + 1
    return (2 * lengths - 1 + orders) @ counts


def code_costs(values: np.ndarray) -> np.ndarray:
    """The bits of `values` under every code a tensor can use: the Laplace scales
    (`laplace_bits`), then the exp-Golomb orders (`exp_golomb_orders_bits`). A sum over
    the values, so the cost of changing one value is that of the value alone, in and
    out (what RDOQ, `models.c3.rdoq`, uses)."""
    values = np.asarray(values, np.int64).ravel()
    if values.size == 0:
        return np.zeros(lt.NUM_SCALES + MAX_EXP_GOLOMB_ORDER + 1)
    golomb = exp_golomb_orders_bits(values).astype(np.float64)
    return np.concatenate([laplace_bits(values), golomb])


def choose_code(values: np.ndarray) -> tuple[int, float]:
    """The code byte with the fewest bits for one tensor, and those bits (the first of
    equals in the order: Laplace scales, then exp-Golomb orders)."""
    if np.size(values) == 0:
        return 0, 0.0
    costs = code_costs(values)
    best = int(np.argmin(costs))
    if best >= lt.NUM_SCALES:
        return EXP_GOLOMB_BASE + best - lt.NUM_SCALES, float(costs[best])
    return best, float(costs[best])


class _BitWriter:
    def __init__(self):
        self.bits = []

    def write(self, value: int, length: int) -> None:
        self.bits.extend((value >> (length - 1 - i)) & 1 for i in range(length))

    def to_bytes(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return np.packbits(np.asarray(padded, np.uint8)).tobytes() if padded else b""


class _BitReader:
    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(data, np.uint8))
        self.position = 0

    def read(self, length: int) -> int:
        if self.position + length > len(self.bits):
            raise BitstreamError("network section: exp-Golomb codes run past the end.")
        value = 0
        for bit in self.bits[self.position : self.position + length]:
            value = (value << 1) | int(bit)
        self.position += length
        return value

    def read_exp_golomb(self, order: int) -> int:
        zeros = 0
        while self.read(1) == 0:
            zeros += 1
            if zeros > _MAX_PREFIX_ZEROS:
                raise BitstreamError("network section: invalid exp-Golomb code.")
        q = (1 << zeros) | self.read(zeros)
        return ((q - 1) << order) | self.read(order)


def encode_networks(integers: list[np.ndarray]) -> bytes:
    """The network section for quantised parameters (in the architecture's order)."""
    codes = [choose_code(q)[0] for q in integers]
    rows, symbols = [], []
    writer = _BitWriter()
    tables = lt.tables()
    for code, q in zip(codes, integers, strict=True):
        values = np.asarray(q, np.int64).ravel()
        if code < EXP_GOLOMB_BASE:
            row = _laplace_row(code)
            rows.append(np.full(values.size, row, np.int32))
            symbols.append((values + tables.half_widths[row]).astype(np.int32))
        else:
            order = code - EXP_GOLOMB_BASE
            for u in zigzag(values):
                q_ = (int(u) >> order) + 1
                length = q_.bit_length()
                writer.write(0, length - 1)
                writer.write(q_, length)
                writer.write(int(u) & ((1 << order) - 1), order)
    range_coded = b""
    if rows:
        range_coded = tables.coder.encode(np.concatenate(rows), np.concatenate(symbols))
    return bytes(codes) + encode_varint(len(range_coded)) + range_coded + writer.to_bytes()


def decode_networks(
    data: bytes, shapes: list[tuple[int, ...]], version: int = 2
) -> list[np.ndarray]:
    """Inverse of `encode_networks` for parameters of the given shapes; `version` is the
    file's format version (1: tfc's escape code, 2: `coding.range_coding`'s)."""
    reader = Reader(data, "network section")
    codes = list(reader.take(len(shapes), "code bytes"))
    for code in codes:
        if not (
            code < lt.NUM_SCALES
            or EXP_GOLOMB_BASE <= code <= EXP_GOLOMB_BASE + MAX_EXP_GOLOMB_ORDER
        ):
            raise BitstreamError(f"network section: invalid code byte {code}.")
    range_coded = reader.take(reader.varint("range-coded length"), "range-coded part")
    golomb = _BitReader(reader.take(reader.remaining(), "exp-Golomb part"))
    tables = lt.tables()
    laplace = [i for i, c in enumerate(codes) if c < EXP_GOLOMB_BASE]
    decoded = {}
    if laplace:
        sizes = [int(np.prod(shapes[i])) for i in laplace]
        rows = np.concatenate(
            [
                np.full(n, _laplace_row(codes[i]), np.int32)
                for i, n in zip(laplace, sizes, strict=True)
            ]
        )
        symbols = tables.coder.decode(range_coded, rows, "network section", version)
        values = symbols - tables.half_widths[rows]
        for i, part in zip(laplace, np.split(values, np.cumsum(sizes)[:-1]), strict=True):
            decoded[i] = part
    elif range_coded:
        raise BitstreamError("network section: unexpected range-coded data.")
    out = []
    for i, (code, shape) in enumerate(zip(codes, shapes, strict=True)):
        if code >= EXP_GOLOMB_BASE:
            order = code - EXP_GOLOMB_BASE
            n = int(np.prod(shape))
            decoded[i] = unzigzag([golomb.read_exp_golomb(order) for _ in range(n)])
        out.append(np.asarray(decoded[i], np.int64).reshape(shape))
    return out
