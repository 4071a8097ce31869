"""Range coding whose decoding work is bounded by the file: tfc's coder, our escape code.

tfc's range coder codes every symbol of a positive-precision row with one bounded table
search. For a row whose precision is negative it adds an escape: a value outside the row
is coded as the row's last symbol followed by an Elias gamma code, and the decoder reads
that code's unary prefix without a bound. On a damaged file the prefix can run past the
end of the string, where the decoder reads zeros, and decoding then spins for minutes
(a 4.8 kB C3 file with 8 flipped bytes kept it busy for over 100 s).

This module keeps tfc's coder for the symbols and codes the escapes itself. Every row has
positive precision; its last symbol, the *escape symbol* E, stands for any value outside
[0, E). A *group* of symbols (what one decoder call reads, e.g. one C3 wavefront) is
coded as

    its symbols, each the value or E
    | for each escape in order: an exponent e in [0, MAX_EXPONENT] (a symbol of a fixed row)
    | for each escape in order: the e bits of q below its leading one, MSB first,

where q = u + 1 and u >= 0 folds the value s out of the row: u = 2 (s - E) for s >= E,
u = -2 s - 1 for s < 0. A group of n symbols therefore costs at most
n (2 + MAX_EXPONENT) symbol decodes, however the file is damaged: the work is bounded by
the number of symbols, which the decoder knows from the header.

Workflow:
    coder = Coder(cdf_rows, precisions)     # or Coder.from_tfc(entropy_model.cdf)
    data = coder.encode(rows, values)       # `groups` to split the symbols into calls
    values = coder.decode(data, rows)       # eagerly, one group
    handle, values = coder.decode_group(handle, tables, rows, n)   # inside a tf.function

Files of format version 1 used tfc's escape code; `Coder.decode_v1_group` reads it one
symbol at a time with the unary prefix bounded (at most MAX_EXPONENT + 1 zeros), so old
files decode as they always did and a damaged one still ends.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from common.errors import BitstreamError

MAX_EXPONENT = 30  # q = u + 1 < 2^31: every decoded value fits an int32
EXPONENT_PRECISION = 16
# P(e) ~ 2^-(e + 1), as in an Elias gamma code; the smallest frequencies are 1.
_EXPONENT_FREQUENCIES = [2 ** (15 - e) if e <= 14 else 1 for e in range(MAX_EXPONENT + 1)]
_EXPONENT_FREQUENCIES[0] -= sum(_EXPONENT_FREQUENCIES) - 2**EXPONENT_PRECISION
EXPONENT_CDF = np.concatenate([[0], np.cumsum(_EXPONENT_FREQUENCIES)]).astype(np.int32)
BIT_CDF = np.asarray([0, 1, 2], np.int32)  # one uniform bit at precision 1 (tfc's own)
_EXPONENT_BITS = EXPONENT_PRECISION - np.log2(np.asarray(_EXPONENT_FREQUENCIES, np.float64))


def fold(values: np.ndarray, escape: np.ndarray) -> np.ndarray:
    """u >= 0 for values outside [0, escape): 2 (s - E) above, -2 s - 1 below."""
    values, escape = np.asarray(values, np.int64), np.asarray(escape, np.int64)
    return np.where(values >= escape, 2 * (values - escape), -2 * values - 1)


def exponents(q: np.ndarray) -> np.ndarray:
    """floor(log2 q) of integers 1 <= q < 2^31, exactly (no floating point)."""
    q = np.asarray(q, np.int64)
    return np.sum([q >= (1 << b) for b in range(1, MAX_EXPONENT + 1)], axis=0).astype(np.int64)


def escape_bits(values: np.ndarray, escape: np.ndarray) -> np.ndarray:
    """Bits of the exponent and mantissa of escaped values (the escape symbol aside)."""
    e = exponents(fold(values, escape) + 1)
    return _EXPONENT_BITS[e] + e


@dataclasses.dataclass(frozen=True)
class Tables:
    """The coder's tables as tensors, for decoding inside a tf.function."""

    lookup: tf.Tensor
    escape_symbols: tf.Tensor
    exponent_row: int
    bit_row: int


class Coder:
    """tfc's range coder over a set of CDF rows, with the bounded escape code above.

    Args:
      cdf_rows: per row, the integer CDF 0 = c_0 < c_1 < ... < c_n = 2^precision; the
        row's symbols are 0..n-1 and its last symbol n - 1 is its escape symbol.
      precisions: per row, its precision (1..16).
    """

    def __init__(self, cdf_rows: list[np.ndarray], precisions: list[int]):
        if len(cdf_rows) != len(precisions):
            raise ValueError("one precision per row")
        parts, escapes = [], []
        for cdf, precision in zip(cdf_rows, precisions, strict=True):
            cdf = np.asarray(cdf, np.int64)
            if not 1 <= precision <= 16:
                raise ValueError(f"precision {precision} not in [1, 16]")
            if len(cdf) < 3 or cdf[0] != 0 or cdf[-1] != 2**precision or np.any(np.diff(cdf) <= 0):
                raise ValueError("a row must rise strictly from 0 to 2^precision, >= 2 symbols")
            parts.append(np.concatenate([[precision], cdf]))
            escapes.append(len(cdf) - 2)
        self._set_rows(np.concatenate(parts) if parts else np.zeros(0, np.int64), escapes)

    def _set_rows(self, lookup: np.ndarray, escapes) -> None:
        """The rows' part of tfc's lookup (flat) and their escape symbols; the escape
        code's two rows are appended."""
        self.num_rows = len(escapes)
        self.exponent_row = self.num_rows
        self.bit_row = self.num_rows + 1
        tail = [[EXPONENT_PRECISION], EXPONENT_CDF, [1], BIT_CDF]
        self.lookup = np.concatenate([lookup, *(np.asarray(t, np.int32) for t in tail)])
        self.lookup = self.lookup.astype(np.int32, copy=False)
        # The escape rows never escape: their "escape symbol" is out of reach.
        self.escape_symbols = np.concatenate(
            [np.asarray(escapes, np.int64), [2**31 - 1] * 2]
        ).astype(np.int32)

    @classmethod
    def from_matrix(cls, cdf: np.ndarray, precision: int) -> "Coder":
        """Rows of one length and one precision, (n, symbols + 1): the coder of
        `Coder(list(cdf), [precision] * n)`, built without a Python loop over the rows
        (a coder with a row per coded value, e.g. `coding.rc.mixture`)."""
        cdf = np.asarray(cdf, np.int64)
        if cdf.ndim != 2 or cdf.shape[1] < 3:
            raise ValueError("rows of >= 2 symbols expected, as an (n, symbols + 1) matrix")
        if not 1 <= precision <= 16:
            raise ValueError(f"precision {precision} not in [1, 16]")
        if cdf.size and (
            np.any(cdf[:, 0] != 0)
            or np.any(cdf[:, -1] != 2**precision)
            or np.any(np.diff(cdf, axis=1) <= 0)
        ):
            raise ValueError("a row must rise strictly from 0 to 2^precision")
        n, length = cdf.shape
        rows = np.concatenate([np.full((n, 1), precision, np.int64), cdf], axis=1)
        coder = cls.__new__(cls)
        coder._set_rows(rows.ravel(), np.full(n, length - 2, np.int64))
        return coder

    @classmethod
    def from_tfc(cls, flat_cdf: np.ndarray) -> "Coder":
        """The rows of a tfc entropy model's `cdf` (rows of [-precision, 0, ..., 2^p])."""
        flat = np.asarray(flat_cdf, np.int64)
        rows, precisions, i = [], [], 0
        while i < len(flat):
            precision = int(abs(flat[i]))
            top = 2**precision
            end = i + 1 + int(np.argmax(flat[i + 1 :] == top)) + 1
            rows.append(flat[i + 1 : end])
            precisions.append(precision)
            i = end
            while i < len(flat) and flat[i] == top:  # padding after a row
                i += 1
        return cls(rows, precisions)

    def tables(self) -> Tables:
        return Tables(
            tf.constant(self.lookup),
            tf.constant(self.escape_symbols),
            self.exponent_row,
            self.bit_row,
        )

    @classmethod
    def from_lookup_rows(cls, rows: np.ndarray) -> "Coder":
        """Rows already in tfc's lookup form, int32 (n, 1 + symbols + 1): precision, then
        the CDF; not checked (for rows built correct by construction, one per coded
        value, where `from_matrix`'s checks cost as much as building them)."""
        rows = np.asarray(rows, np.int32)
        coder = cls.__new__(cls)
        coder._set_rows(rows.reshape(-1), np.full(rows.shape[0], rows.shape[1] - 3, np.int64))
        return coder

    # Encoder.

    def sequence(self, rows, values, groups=None) -> tuple[np.ndarray, np.ndarray]:
        """The (row, symbol) pairs in coded order; `groups` (non-decreasing group ids, one
        per symbol) splits the symbols into separately decoded groups."""
        rows = np.asarray(rows, np.int64).ravel()
        values = np.asarray(values, np.int64).ravel()
        if rows.shape != values.shape:
            raise ValueError("one row per value")
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise ValueError("row out of range")
        groups = np.zeros(rows.size, np.int64) if groups is None else np.asarray(groups).ravel()
        escape = self.escape_symbols[rows].astype(np.int64)
        out = (values < 0) | (values >= escape)
        q = fold(values[out], escape[out]) + 1
        if q.size and q.max() >= 2 ** (MAX_EXPONENT + 1):
            raise ValueError(f"a value is too far outside its row (|u| >= 2^{MAX_EXPONENT + 1})")
        e = exponents(q)
        bit_index = np.concatenate([np.arange(n - 1, -1, -1) for n in e]) if e.size else []
        bit_owner = np.repeat(np.arange(e.size), e)
        bits = (q[bit_owner] >> np.asarray(bit_index, np.int64)) & 1
        group = np.concatenate([groups, groups[out], groups[out][bit_owner]])
        stage = np.repeat([0, 1, 2], [rows.size, e.size, bits.size])
        order = np.concatenate([np.arange(rows.size), np.arange(e.size), np.arange(bits.size)])
        all_rows = np.concatenate(
            [rows, np.full(e.size, self.exponent_row), np.full(bits.size, self.bit_row)]
        )
        all_values = np.concatenate([np.where(out, escape, values), e, bits])
        perm = np.lexsort((order, stage, group))
        return all_rows[perm].astype(np.int32), all_values[perm].astype(np.int32)

    def encode(self, rows, values, groups=None) -> bytes:
        all_rows, all_values = self.sequence(rows, values, groups)
        handle = tfc.create_range_encoder([], self.lookup)
        handle = tfc.entropy_encode_index(handle, all_rows, all_values)
        return tfc.entropy_encode_finalize(handle).numpy()

    # Decoder.

    @staticmethod
    def decode_group(handle, tables: Tables, rows: tf.Tensor, n: tf.Tensor, escape=None):
        """Decodes one group of `n` symbols of `rows` (int32 [n]); works in a graph.
        `escape` (optional) is `tables.escape_symbols` gathered at `rows`, e.g. computed
        in a compiled function beside the rows."""
        n = tf.convert_to_tensor(n, tf.int32)
        handle, symbols = tfc.entropy_decode_index(handle, rows, n[None], tf.int32)
        if escape is None:
            escape = tf.gather(tables.escape_symbols, rows)
        escaped = tf.equal(symbols, escape)

        def with_escapes():
            where = tf.where(escaped)
            count = tf.shape(where)[0]
            exp_rows = tf.fill([count], tables.exponent_row)
            h, e = tfc.entropy_decode_index(handle, exp_rows, count[None], tf.int32)
            total = tf.reduce_sum(e)
            h, bits = tfc.entropy_decode_index(
                h, tf.fill([total], tables.bit_row), total[None], tf.int32
            )
            owner = tf.repeat(tf.range(count), e)
            starts = tf.cumsum(e, exclusive=True)
            shift = tf.gather(e + starts, owner) - 1 - tf.range(total)
            mantissa = tf.math.unsorted_segment_sum(
                tf.bitwise.left_shift(tf.cast(bits, tf.int64), tf.cast(shift, tf.int64)),
                owner,
                count,
            )
            u = tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.cast(e, tf.int64))
            u = u + mantissa - 1
            esc = tf.cast(tf.gather_nd(escape, where), tf.int64)
            # tf.equal, not ==: `==` on tensors depends on the process's TF state.
            value = tf.where(tf.equal(u % 2, 0), esc + u // 2, -(u + 1) // 2)
            return h, tf.tensor_scatter_nd_update(symbols, where, tf.cast(value, tf.int32))

        # The common case (no escape) costs one comparison and one reduction.
        return tf.cond(tf.reduce_any(escaped), with_escapes, lambda: (tf.identity(handle), symbols))

    @staticmethod
    def decode_v1_group(handle, tables: Tables, rows: tf.Tensor, n: tf.Tensor):
        """Decodes `n` symbols coded with tfc's escape code (format version 1) one at a
        time, reading at most MAX_EXPONENT + 1 prefix zeros per escape. Returns the
        handle, the values and whether every escape was well formed."""
        bit_rows = tf.fill([1], tables.bit_row)
        n = tf.convert_to_tensor(n, tf.int32)

        def bit(h):
            h, b = tfc.entropy_decode_index(h, bit_rows, [1], tf.int32)
            return h, b[0]

        def escaped(h, max_value):
            # tfc: zeros, then the bits of gamma from its leading one down, then a sign.
            def prefix_body(h, zeros, done):
                h, b = bit(h)
                return h, zeros + 1 - b, tf.equal(b, 1)

            h, zeros, _ = tf.while_loop(
                lambda h, zeros, done: tf.logical_and(tf.logical_not(done), zeros <= MAX_EXPONENT),
                prefix_body,
                (h, tf.constant(0), tf.constant(False)),
            )
            good = zeros <= MAX_EXPONENT
            zeros = tf.minimum(zeros, MAX_EXPONENT)

            def mantissa_body(k, h, gamma):
                h, b = bit(h)
                return k + 1, h, gamma * 2 + b

            _, h, gamma = tf.while_loop(
                lambda k, h, gamma: k < zeros, mantissa_body, (tf.constant(0), h, tf.constant(1))
            )
            h, sign = bit(h)
            value = tf.where(tf.equal(sign, 1), -gamma, gamma + max_value - 1)
            return h, value, good

        def body(j, h, values, ok):
            row = rows[j : j + 1]
            h, s = tfc.entropy_decode_index(h, row, [1], tf.int32)
            max_value = tf.gather(tables.escape_symbols, row[0])
            h, value, good = tf.cond(
                tf.equal(s[0], max_value),
                lambda: escaped(h, max_value),
                lambda: (tf.identity(h), s[0], tf.constant(True)),
            )
            return j + 1, h, values.write(j, value), tf.logical_and(ok, good)

        values = tf.TensorArray(tf.int32, size=n)
        _, handle, values, ok = tf.while_loop(
            lambda j, *_: j < n, body, (tf.constant(0), handle, values, tf.constant(True))
        )
        return handle, tf.reshape(values.stack(), [n]), ok

    def decode(self, data: bytes, rows, what: str, version: int = 2) -> np.ndarray:
        """Decodes one group eagerly (int64 values); BitstreamError if it cannot."""
        rows = np.asarray(rows, np.int32).ravel()
        try:
            values, ok = _decode_one_group(
                tf.constant(data), self.tables(), tf.constant(rows), version
            )
        except tf.errors.OpError as e:
            raise BitstreamError(f"{what}: cannot be decoded ({e.message}).") from None
        if not bool(ok):
            raise BitstreamError(f"{what}: invalid escape code (damaged file).")
        return values.numpy().astype(np.int64)


def _decode_one_group(string, tables: Tables, rows, version: int):
    fn = _decode_fn(min(version, 2))
    return fn(
        string, tables.lookup, tables.escape_symbols, rows, tables.exponent_row, tables.bit_row
    )


_DECODE_FNS = {}


def _decode_fn(version: int):
    if version not in _DECODE_FNS:

        @tf.function(autograph=False, reduce_retracing=True)
        def fn(string, lookup, escape_symbols, rows, exponent_row, bit_row):
            tables = Tables(lookup, escape_symbols, exponent_row, bit_row)
            handle = tfc.create_range_decoder(string, lookup)
            n = tf.size(rows)
            if version >= 2:
                _, values = Coder.decode_group(handle, tables, rows, n)
                return values, tf.constant(True)
            # Version 1: plain symbols are tfc's; read again one by one if one escaped.
            _, values = tfc.entropy_decode_index(handle, rows, n[None], tf.int32)
            escaped = tf.reduce_any(tf.equal(values, tf.gather(escape_symbols, rows)))

            def exact():
                again = tfc.create_range_decoder(string, lookup)
                _, exact_values, ok = Coder.decode_v1_group(again, tables, rows, n)
                return exact_values, ok

            return tf.cond(escaped, exact, lambda: (values, tf.constant(True)))

        _DECODE_FNS[version] = fn
    return _DECODE_FNS[version]
