"""Coding of the quantised network parameters: lossless, cheapest code per tensor."""

import numpy as np
import pytest

from coding import weights
from common.errors import BitstreamError


def tensors():
    rng = np.random.default_rng(0)
    return [
        np.round(rng.laplace(0, 20, (7, 18))).astype(np.int64),
        np.zeros(18, np.int64),
        np.round(rng.laplace(0, 3e4, (18, 3))).astype(np.int64),  # beyond the tables
        np.array([5, -7, 0], np.int64),
        np.round(rng.laplace(0, 0.3, (3, 3, 3, 3))).astype(np.int64),
    ]


def test_round_trip_and_choice():
    data = weights.encode_networks(tensors())
    decoded = weights.decode_networks(data, [t.shape for t in tensors()])
    for a, b in zip(decoded, tensors(), strict=True):
        np.testing.assert_array_equal(a, b)
    codes = list(data[: len(tensors())])
    assert codes[2] >= weights.EXP_GOLOMB_BASE  # very wide: exp-Golomb wins
    assert codes[0] < weights.EXP_GOLOMB_BASE  # Laplace-like: the range coder wins


def test_chosen_code_is_the_cheapest():
    values = tensors()[0]
    code, bits = weights.choose_code(values)
    golomb = min(weights.exp_golomb_bits(values, k) for k in range(32))
    assert bits <= golomb


@pytest.mark.parametrize("cut", [0, 3, 6, -1])
def test_damaged_section_is_a_bitstream_error_or_decodes(cut):
    data = weights.encode_networks(tensors())
    shapes = [t.shape for t in tensors()]
    damaged = data[:cut] if cut >= 0 else data[:-1]
    try:
        out = weights.decode_networks(damaged, shapes)
    except BitstreamError:
        return
    assert [o.shape for o in out] == shapes


def test_invalid_code_byte():
    data = bytearray(weights.encode_networks(tensors()))
    data[0] = 250
    with pytest.raises(BitstreamError, match="code byte"):
        weights.decode_networks(bytes(data), [t.shape for t in tensors()])


def test_vectorised_bits_equal_the_per_scale_and_per_order_counts():
    """`laplace_bits` and `exp_golomb_orders_bits` count what `tables().bits` and
    `exp_golomb_bits` count one scale or order at a time, escapes included."""
    from coding import laplace_tables as lt

    rng = np.random.default_rng(5)
    values = np.round(rng.laplace(scale=40.0, size=300)).astype(np.int64)
    values[:3] = [0, 70000, -300]  # beyond every row's half width: escapes
    tables = lt.tables()
    per_scale = [tables.bits(weights._laplace_row(c), values) for c in range(lt.NUM_SCALES)]
    np.testing.assert_allclose(weights.laplace_bits(values), per_scale, rtol=1e-12)
    per_order = [weights.exp_golomb_bits(values, k) for k in range(32)]
    np.testing.assert_array_equal(weights.exp_golomb_orders_bits(values), per_order)
