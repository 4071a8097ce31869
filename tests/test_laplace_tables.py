"""The coder's Laplace tables: pinned, valid for tfc, and close to the ideal code length."""

import decimal
import itertools
import math

import numpy as np
import pytest
import tensorflow_compression as tfc

from coding import laplace_tables as lt
from common.errors import CodecError

# A change of the tables changes every file: it needs a format version bump. The module
# checks its own pin at load time; this one keeps that pin from moving silently.
TABLES_SHA256 = "98326cccbe9e09eb"


def test_tables_are_pinned():
    assert lt.tables().sha256().startswith(TABLES_SHA256)
    assert lt.TABLES_SHA256.startswith(TABLES_SHA256)


def test_tables_that_differ_from_the_pin_stop_the_codec(monkeypatch):
    """A machine that builds other tables would decode garbage: it must refuse instead."""
    lt.tables()  # the real tables, cached
    lt.tables.cache_clear()
    monkeypatch.setattr(lt, "TABLES_SHA256", "0" * 64)
    try:
        with pytest.raises(CodecError, match="differ from the format"):
            lt.tables()
    finally:
        lt.tables.cache_clear()
        monkeypatch.undo()
    assert lt.tables().sha256().startswith(TABLES_SHA256)


def _reference_row(scale_index: int, bucket: int) -> list[int]:
    """A row's CDF from its definition in plain Python (IEEE doubles one operation at a
    time, `math.fsum`, `decimal`): what any platform computes."""
    d = decimal.Decimal
    context = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)
    b = context.exp(d(lt.LN_SCALE_MIN) + d(scale_index) / lt.SCALES_PER_LN)
    delta = d(bucket) / lt.OFFSET_BUCKETS - d("0.5")
    ratio = context.exp(-1 / b)
    right = context.exp(-(d("0.5") - delta) / b) / 2
    left = context.exp(-(d("0.5") + delta) / b) / 2
    k = lt.half_width(float(b))
    powers, p = [], 1.0
    for _ in range(k):
        powers.append(p)
        p *= float(ratio)
    upper = [float(right * (1 - ratio)) * x for x in powers]
    lower = [float(left * (1 - ratio)) * x for x in powers]
    escape = float(right * ratio**k) + float(left * ratio**k)
    pmf = [max(x, 0.0) for x in lower[::-1] + [float(1 - right - left)] + upper + [escape]]
    total, n = math.fsum(pmf), len(pmf)
    scaled = [x / total * float(lt.TOTAL - n) for x in pmf]
    freqs = [math.floor(x) + 1 for x in scaled]
    order = sorted(range(n), key=lambda i: -(scaled[i] - math.floor(scaled[i])))
    for i in order[: lt.TOTAL - sum(freqs)]:
        freqs[i] += 1
    return [0] + list(itertools.accumulate(freqs))


def test_tables_match_their_plain_python_definition():
    """The numpy build uses only operations whose results do not depend on the numpy
    build or CPU kernels: it equals a one-operation-at-a-time Python build."""
    tables = lt.tables()
    for row in range(0, lt.NUM_ROWS, 13):
        scale_index, bucket = divmod(row, lt.NUM_OFFSETS)
        assert tables.cdf_rows[row].tolist() == _reference_row(scale_index, bucket), row


def test_every_symbol_is_codable():
    tables = lt.tables()
    assert len(tables.half_widths) == lt.NUM_ROWS
    for row in range(0, lt.NUM_ROWS, 97):
        freqs = 2 ** (lt.PRECISION - tables.symbol_bits[row])
        assert np.all(freqs >= 1) and round(freqs.sum()) == lt.TOTAL


def test_coded_size_is_close_to_the_ideal():
    """Laplace samples (scales 0.05 .. 20) code within 0.5 % of -log2 of their probability."""
    tables = lt.tables()
    rng = np.random.default_rng(1)
    n = 50000
    scale = np.exp(rng.uniform(-3, 3, n))
    mu = rng.uniform(-5, 5, n)
    y = np.round(mu + rng.laplace(0, scale))
    rounded = np.floor(mu + 0.5)
    scale_index = np.clip(np.round((np.log(scale) - lt.LN_SCALE_MIN) * lt.SCALES_PER_LN), 0, None)
    bucket = np.round((mu - rounded + 0.5) * lt.OFFSET_BUCKETS)
    rows = lt.row_index(scale_index, bucket).astype(np.int32)
    values = (y - rounded + tables.half_widths[rows]).astype(np.int32)
    string = tables.coder.encode(rows, values)
    ideal = -np.sum(np.log2(tfc.NoisyLaplace(loc=mu, scale=scale).prob(y).numpy()))
    assert 8 * len(string) < 1.005 * ideal
    np.testing.assert_array_equal(tables.coder.decode(string, rows, "test"), values)
