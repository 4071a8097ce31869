"""Integer CDF tables of discretised Laplace distributions for tfc's range coder.

C3 / COOL-CHIC model each latent symbol y (in units of the quantisation step) by a
Laplace(mu, b) integrated over [y - 1/2, y + 1/2]. The coder codes v = y - round(mu)
with one of a fixed set of tables, indexed by
- a scale index: ln b on a grid of SCALES_PER_LN steps per unit of ln b, from
  LN_SCALE_MIN to LN_SCALE_MAX (the scale ratio between rows is e^(1/16) ~ 1.065);
- an offset bucket: mu - round(mu) in [-1/2, 1/2) mapped to the nearest of
  OFFSET_BUCKETS + 1 centres j / OFFSET_BUCKETS - 1/2 (so 0 is one of them).

Each row covers v in [-K, K] (K grows with b, up to MAX_HALF_WIDTH) plus an escape
symbol: values outside the row are coded by `coding.range_coding`'s bounded escape code
(format version 2; version 1 used tfc's own, which `coding.range_coding` still reads).
Every symbol of a row has a nonzero frequency, as the coder requires.

The tables must be identical on every machine, so they are built from numbers that do
not depend on the platform: the transcendental constants of each row come from Python's
`decimal` (correctly rounded), sums are `math.fsum` (correctly rounded) or integer, and
the rest is IEEE basic operations (*, /, floor) element by element or in a sequential
scan (`np.cumprod`), which no SIMD kernel may reorder. Vectorised reductions
(`np.sum`), whose summation order differs between numpy builds and CPU kernels, are not
used. `TABLES_SHA256` pins the result, and every process checks it when it builds the
tables: a machine that built other tables would decode garbage, so it stops instead.
"""

import decimal
import functools
import hashlib
import math

import numpy as np

from coding.range_coding import Coder, escape_bits
from common.errors import CodecError

PRECISION = 16  # tfc's maximum: the least overhead on near-certain symbols
TOTAL = 2**PRECISION
LN_SCALE_MIN = -4  # b = 0.018: below this, a row is a near-certain 0 anyway
LN_SCALE_MAX = 8  # b = 2981 symbols
SCALES_PER_LN = 16
NUM_SCALES = (LN_SCALE_MAX - LN_SCALE_MIN) * SCALES_PER_LN + 1
OFFSET_BUCKETS = 16
NUM_OFFSETS = OFFSET_BUCKETS + 1
NUM_ROWS = NUM_SCALES * NUM_OFFSETS
MAX_HALF_WIDTH = 256
# Half width K = ceil(TAIL_SCALES * b): the mass beyond K is < e^-14 / 2 < 2^-21.
TAIL_SCALES = 14

# sha256 of the CDF rows and half widths (`LaplaceTables.sha256`): the format's tables.
TABLES_SHA256 = "98326cccbe9e09eb782ba6a7b4a3808036ceee122c2f63280bc410245dc46b3f"

_CONTEXT = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)


def scale_of_index(index: int) -> float:
    """The Laplace scale (symbol units) of a scale index, as the tables use it."""
    ln = decimal.Decimal(LN_SCALE_MIN) + decimal.Decimal(index) / SCALES_PER_LN
    return float(_CONTEXT.exp(ln))


def offset_of_bucket(bucket: int) -> float:
    return bucket / OFFSET_BUCKETS - 0.5


def row_index(scale_index, offset_bucket):
    """Row of the lookup for a (scale index, offset bucket) pair."""
    return scale_index * NUM_OFFSETS + offset_bucket


def half_width(scale: float) -> int:
    return int(min(MAX_HALF_WIDTH, max(1, np.ceil(TAIL_SCALES * scale))))


def _row_pmf(scale_index: int, bucket: int) -> tuple[np.ndarray, int]:
    """Probabilities of v = -K..K and of the escape (last), and K."""
    d = decimal.Decimal
    ln_b = d(LN_SCALE_MIN) + d(scale_index) / SCALES_PER_LN
    b = _CONTEXT.exp(ln_b)
    delta = d(bucket) / OFFSET_BUCKETS - d("0.5")
    ratio = _CONTEXT.exp(-1 / b)  # P(v + 1) / P(v) in the right tail
    right = _CONTEXT.exp(-(d("0.5") - delta) / b) / 2  # mass above 1/2 (the x > delta tail)
    left = _CONTEXT.exp(-(d("0.5") + delta) / b) / 2  # mass below -1/2
    k = half_width(float(b))
    # v >= 1: P(v) = right * (1 - ratio) * ratio^(v - 1); v <= -1 mirrors with `left`.
    powers = np.cumprod(np.concatenate([[1.0], np.full(k - 1, float(ratio))]))
    upper = float(right * (1 - ratio)) * powers
    lower = float(left * (1 - ratio)) * powers
    centre = float(1 - right - left)
    escape = float(right * ratio**k) + float(left * ratio**k)
    pmf = np.concatenate([lower[::-1], [centre], upper, [escape]])
    return np.maximum(pmf, 0.0), k


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Integer frequencies summing to 2^PRECISION, each >= 1 (largest-remainder rounding)."""
    n = len(pmf)
    pmf = pmf / math.fsum(pmf)
    scaled = pmf * float(TOTAL - n)
    freqs = np.floor(scaled).astype(np.int64) + 1
    remainder = scaled - np.floor(scaled)
    missing = TOTAL - int(freqs.sum())
    order = np.argsort(-remainder, kind="stable")
    freqs[order[:missing]] += 1
    return freqs


class LaplaceTables:
    """The CDF rows, their range coder (`coder`) and what the coder needs per row.

    A row codes the symbol v + K of a value v in [-K, K] (K = `half_widths[row]`); its
    escape symbol 2K + 1 stands for any value outside.
    """

    def __init__(self):
        rows, widths, bits = [], [], []
        for scale_index in range(NUM_SCALES):
            for bucket in range(NUM_OFFSETS):
                pmf, k = _row_pmf(scale_index, bucket)
                freqs = quantize_pmf(pmf)
                # Integer running sums: exact on any machine.
                rows.append(np.concatenate([[0], np.cumsum(freqs, dtype=np.int64)]))
                widths.append(k)
                bits.append(PRECISION - np.log2(freqs))
        self.cdf_rows = rows
        self.coder = Coder(rows, [PRECISION] * len(rows))
        self.half_widths = np.asarray(widths, np.int32)
        # Bits of each symbol of each row (escape last), for choosing coding parameters.
        self.symbol_bits = bits

    def sha256(self) -> str:
        data = np.concatenate(self.cdf_rows).astype(np.int32).tobytes()
        return hashlib.sha256(data + self.half_widths.tobytes()).hexdigest()

    def bits(self, row: int, values: np.ndarray) -> float:
        """Bits to code integers `values` with one row, escapes by Elias gamma."""
        k = int(self.half_widths[row])
        table = self.symbol_bits[row]
        values = np.asarray(values, np.int64)
        inside = np.abs(values) <= k
        total = float(np.sum(table[values[inside] + k]))
        outside = values[~inside]
        if outside.size:
            # The escape symbol, then its exponent and mantissa (coding.range_coding).
            total += outside.size * float(table[-1])
            total += float(np.sum(escape_bits(outside + k, 2 * k + 1)))
        return total


@functools.lru_cache(maxsize=1)
def tables() -> LaplaceTables:
    """The tables, built once per process (~0.3 s) and checked against the format's."""
    built = LaplaceTables()
    if built.sha256() != TABLES_SHA256:
        raise CodecError(
            "the Laplace tables built on this machine differ from the format's "
            f"(sha256 {built.sha256()[:16]}, expected {TABLES_SHA256[:16]}): C3 files "
            "would not decode; please report your platform and numpy version."
        )
    return built
