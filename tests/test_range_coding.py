"""Bounded range coding: escapes round-trip, tfc's own escape code is still read, and no
damaged string keeps the decoder busy."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from coding.range_coding import MAX_EXPONENT, Coder, escape_bits, exponents, fold
from common.errors import BitstreamError


def random_rows(rng, sizes):
    rows = []
    for n in sizes:
        freqs = rng.integers(1, 100, n).astype(np.float64)
        freqs = np.floor(freqs / freqs.sum() * (2**16 - n)).astype(np.int64) + 1
        freqs[0] += 2**16 - freqs.sum()
        rows.append(np.concatenate([[0], np.cumsum(freqs)]))
    return rows


@pytest.fixture(scope="module")
def coder():
    return Coder(random_rows(np.random.default_rng(0), [5, 9, 3, 2]), [16] * 4)


def sample(rng, n=3000):
    rows = rng.integers(0, 4, n)
    values = rng.integers(-40, 50, n)
    values[::3] = 0  # mostly inside the rows
    values[7] = 2**29  # far outside: exponent 30
    values[11] = -(2**29)
    return rows, values


def test_values_inside_and_outside_the_rows_round_trip(coder):
    rows, values = sample(np.random.default_rng(1))
    data = coder.encode(rows, values)
    np.testing.assert_array_equal(coder.decode(data, rows, "t"), values)


def test_groups_decode_in_successive_calls(coder):
    """Each group (e.g. a C3 wavefront) is decoded by one call on the same handle."""
    rows, values = sample(np.random.default_rng(2), 2000)
    data = coder.encode(rows, values, np.repeat(np.arange(20), 100))
    tables = coder.tables()

    @tf.function(autograph=False)
    def decode(string, rows):
        handle = tfc.create_range_decoder(string, tables.lookup)
        out = []
        for g in range(20):
            handle, part = Coder.decode_group(handle, tables, rows[100 * g : 100 * g + 100], 100)
            out.append(part)
        return tf.concat(out, 0)

    decoded = decode(tf.constant(data), tf.constant(rows.astype(np.int32)))
    np.testing.assert_array_equal(decoded.numpy(), values)


def test_escape_cost_matches_the_coded_size(coder):
    """Escapes cost the escape symbol + exponent + mantissa, as `escape_bits` says."""
    rows = np.zeros(2000, np.int64)
    inside, outside = np.zeros(2000, np.int64), np.full(2000, 1000, np.int64)
    extra = 8 * (len(coder.encode(rows, outside)) - len(coder.encode(rows, inside)))
    escape = coder.escape_symbols[0]
    row = np.diff(random_rows(np.random.default_rng(0), [5])[0])
    symbol_bits = 16 - np.log2(row)
    expected = 2000 * (escape_bits(np.array([1000]), escape)[0] + symbol_bits[-1] - symbol_bits[0])
    assert extra == pytest.approx(expected, rel=0.01)


def test_fold_and_exponents_are_exact():
    escape = np.full(6, 10)
    u = fold(np.array([10, 11, -1, -2, 12, -3]), escape)
    np.testing.assert_array_equal(u, [0, 2, 1, 3, 4, 5])
    q = np.array([1, 2, 3, 4, 2**30 - 1, 2**30, 2**31 - 1])
    np.testing.assert_array_equal(exponents(q), [0, 1, 1, 2, 29, 30, 30])


def test_values_beyond_the_escape_range_are_refused(coder):
    with pytest.raises(ValueError, match="too far outside"):
        coder.encode([0], [2**31 - 1])
    assert MAX_EXPONENT == 30


def version_1_string(coder, rows, values) -> bytes:
    """tfc's own escape code (negative precision rows), as format version 1 wrote it."""
    lookup = coder.lookup.copy()
    position = 0
    for _ in range(coder.num_rows):
        size = np.argmax(lookup[position + 1 :] == 2**16) + 2
        lookup[position] = -lookup[position]
        position += size
    handle = tfc.create_range_encoder([], lookup)
    handle = tfc.entropy_encode_index(handle, rows.astype(np.int32), values.astype(np.int32))
    return tfc.entropy_encode_finalize(handle).numpy()


def test_version_1_strings_decode_as_tfc_wrote_them(coder):
    rows, values = sample(np.random.default_rng(3), 1500)
    values = np.clip(values, -1000, 1000)
    data = version_1_string(coder, rows, values)
    np.testing.assert_array_equal(coder.decode(data, rows, "t", version=1), values)
    inside = np.where(values < 0, 0, np.minimum(values, coder.escape_symbols[rows] - 1))
    plain = version_1_string(coder, rows, inside)  # no escape: the one-call path
    np.testing.assert_array_equal(coder.decode(plain, rows, "t", version=1), inside)


def spinning_string(coder) -> bytes:
    """An escape followed by 40 zero bits: tfc's decoder reads a unary prefix of 40 (and
    of ever more past the end of a damaged string: the spin of issue 14)."""
    rows = np.concatenate([[0], np.full(40, coder.bit_row)])
    values = np.concatenate([[coder.escape_symbols[0]], np.zeros(40, np.int64)])
    handle = tfc.create_range_encoder([], coder.lookup)
    handle = tfc.entropy_encode_index(handle, rows.astype(np.int32), values.astype(np.int32))
    return tfc.entropy_encode_finalize(handle).numpy()


def test_damaged_strings_decode_to_something_or_fail(coder):
    """Any bytes decode (version 2) or give a BitstreamError (version 1's unary prefix
    is cut after MAX_EXPONENT + 1 zeros): never a spin."""
    rng = np.random.default_rng(4)
    rows, values = sample(rng, 1500)
    v2 = coder.encode(rows, values)
    v1 = version_1_string(coder, rows, np.clip(values, -1000, 1000))
    with pytest.raises(BitstreamError, match="invalid escape"):
        coder.decode(spinning_string(coder), np.zeros(100, np.int32), "t", version=1)
    strings = [bytes(len(v1)), bytes(4), spinning_string(coder)]
    for data in (v1, v2):
        for _ in range(10):
            damaged = bytearray(data)
            for _ in range(16):
                damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
            strings.append(bytes(damaged))
    outcomes = set()
    for data in strings:
        for version in (1, 2):
            try:
                decoded = coder.decode(data, rows, "t", version)
                assert decoded.shape == rows.shape
                outcomes.add("decoded")
            except BitstreamError as e:
                assert "escape" in str(e)
                outcomes.add("error")
    assert "decoded" in outcomes and outcomes <= {"decoded", "error"}
