"""RC's logistic mixture in integer arithmetic: one quantised CDF per coded value.

`models.rc.mixture` is the float distribution that the residual CNN is trained with;
this is its exact counterpart for the range coder. The decoder must build, for every
8-bit value it decodes, the very CDF the encoder coded it with, in any process, on any
machine: a mixture has no shared table rows to pick (as the Laplace tables of
`coding.laplace_tables` do), and a float CDF (sigmoid, exp, softmax) may differ in its
last bit between libraries. So everything here is integers (numpy int64):

- the network's outputs are integers at the activation scale 2^-12
  (`coding.rc.codec.FixedPointResidual`); the residuals r are integers;
- mu_k  = x_l 2^12 + d_k (+ round(a r 2^12), the coupling), clipped to MEAN_RANGE;
- ln s_k on a grid of 1/16 (the tau offset moves it by whole steps), 1/s_k from a table;
- mixture weights w_k = EXP[(max_j pi_j - pi_k) on a grid of 1/16], a table of
  round(2^16 e^(-i/16)): the softmax up to its normalisation, which cancels below;
- F_k at a bin edge v = SIGMOID[round(256 (v - mu_k) / s_k)], a table of
  round(2^16 sigmoid(i / 256)) for |i / 256| <= 12 (beyond 11.79 the sigmoid rounds
  to 0 or 2^16 anyway);
- CDF of the mixture at edge v: F(v) = sum_k w_k F_k(v), over T = 2^16 sum_k w_k;
- the coder's CDF (precision 16) of the 256 values and an escape symbol:
  c_0 = 0, c_i = i + floor(F(i - 1/2) M / T) for i = 1..255, c_256 = 256 + M,
  c_257 = 2^16, with M = 2^16 - 257: every value has a frequency of at least 1 (the
  float model's distribution is the same to the tables' resolution), and the escape
  symbol, which never occurs, costs 2^-16 of the range.

The tables are computed with `decimal` (correctly rounded, the same everywhere) once.
"""

import decimal
import functools

import numpy as np

from coding import fixed_point as fp
from coding.range_coding import Coder
from common.errors import BitstreamError
from models.rc import mixture as model_mixture

PRECISION = 16
NUM_VALUES = 256
LN_SCALE_STEP_BITS = 4  # ln s on a grid of 1/16
SIGMOID_BITS = 8  # sigmoid argument on a grid of 1/256
SIGMOID_RANGE = 12  # |argument| <= 12: beyond 11.79 the entries are 0 and 2^16
INV_SCALE_BITS = 16  # 1/s at 2^-16
WEIGHT_BITS = 16
WEIGHT_RANGE = 16  # logit differences beyond 16 weigh e^-16 (0 at 2^-16)
_ACT = fp.ACTIVATION_BITS
_MASS = 2**PRECISION - NUM_VALUES - 1  # M: what the frequencies share beyond their 1s
CHUNK = 16384  # values per range-coder string (the tables: CHUNK x 259 int32, 17 MB)


def _decimal_round(value: decimal.Decimal) -> int:
    return int(value.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


@functools.lru_cache(maxsize=1)
def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(SIGMOID, INV_SCALE, WEIGHT) int64 tables (see the module docstring)."""
    ctx = fp.DECIMAL_CONTEXT
    one = decimal.Decimal(1)
    steps = 2**SIGMOID_BITS
    sigmoid = [
        _decimal_round(2**PRECISION / (one + ctx.exp(-decimal.Decimal(i) / steps)))
        for i in range(-SIGMOID_RANGE * steps, SIGMOID_RANGE * steps + 1)
    ]
    low, high = model_mixture.LN_SCALE_RANGE
    grid = 2**LN_SCALE_STEP_BITS
    inv_scale = [
        _decimal_round(2**INV_SCALE_BITS * ctx.exp(-decimal.Decimal(j) / grid))
        for j in range(int(low * grid), int(high * grid) + 1)
    ]
    weight = [
        _decimal_round(2**WEIGHT_BITS * ctx.exp(-decimal.Decimal(i) / grid))
        for i in range(WEIGHT_RANGE * grid + 1)
    ]
    return tuple(np.asarray(t, np.int64) for t in (sigmoid, inv_scale, weight))


def _round_shift(x: np.ndarray, bits: int) -> np.ndarray:
    """floor(x / 2^bits + 1/2) of int64 arrays."""
    return (x + (1 << (bits - 1))) >> bits


def channel_parameters(outputs: np.ndarray, x_l: np.ndarray, residuals: np.ndarray,
                       channel: int, mixtures: int, tau: int = 0):  # fmt: skip
    """(mu, ln-scale index, weights), int64 (n, K) each, of one channel's values.

    Args:
      outputs: int64 (n, 12 K), the fixed-point network's outputs (integers at 2^-12).
      x_l: int64 (n, 3), the lossy reconstruction.
      residuals: int64 (n, 3), x - x_l; only the channels before `channel` are read.
      channel: 0, 1 or 2.
      tau: the channel's ln-scale offset, in steps of 1/16.
    """
    k = mixtures
    parts = outputs.reshape(-1, 4, 3, k)
    mu = (x_l[:, channel, None] << _ACT) + parts[:, 0, channel]
    limit = int(model_mixture.COUPLING_LIMIT * 2 ** (_ACT + model_mixture.COUPLING_BITS))
    a = np.clip(parts[:, 3], -limit, limit)  # rows a_GR, a_BR, a_BG
    bits = model_mixture.COUPLING_BITS
    if channel == 1:
        mu = mu + _round_shift(a[:, 0] * residuals[:, 0, None], bits)
    elif channel == 2:
        coupled = a[:, 1] * residuals[:, 0, None] + a[:, 2] * residuals[:, 1, None]
        mu = mu + _round_shift(coupled, bits)
    low, high = model_mixture.MEAN_RANGE
    mu = np.clip(mu, int(low) << _ACT, int(high) << _ACT)
    grid_shift = _ACT - LN_SCALE_STEP_BITS
    ln_low, ln_high = (int(v * 2**LN_SCALE_STEP_BITS) for v in model_mixture.LN_SCALE_RANGE)
    shift = int(model_mixture.LN_SCALE_SHIFT * 2**LN_SCALE_STEP_BITS) + int(tau)
    ln_index = np.clip(_round_shift(parts[:, 1, channel], grid_shift) + shift, ln_low, ln_high)
    logits = parts[:, 2, channel]
    gap = _round_shift(logits.max(axis=1, keepdims=True) - logits, grid_shift)
    weights = tables()[2][np.clip(gap, 0, WEIGHT_RANGE * 2**LN_SCALE_STEP_BITS)]
    return mu, ln_index - ln_low, weights


def _edge_cdf(mu, ln_index, weights, edges):
    """floor(F(v) M / T) at the bin edges `edges` (int64 (n, E), at 2^-12) of each row."""
    sigmoid, inv_scale, _ = tables()
    shift = _ACT + INV_SCALE_BITS - SIGMOID_BITS
    centre = SIGMOID_RANGE << SIGMOID_BITS
    mixed = np.zeros(edges.shape, np.int64)
    for j in range(mu.shape[1]):
        arg = (edges - mu[:, j, None]) * inv_scale[ln_index[:, j]][:, None]
        index = np.clip(_round_shift(arg, shift), -centre, centre) + centre
        mixed += weights[:, j, None] * sigmoid[index]
    total = weights.sum(axis=1, keepdims=True) << PRECISION
    return mixed * _MASS // total


def _edge(i):
    """The bin edge below value i, i - 1/2, at the activation scale."""
    return (2 * np.asarray(i, np.int64) - 1) << (_ACT - 1)


def _windows(mu: np.ndarray, ln_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first and last edge index i (edge i - 1/2, 1 <= i <= 255) outside
    which every component's sigmoid is saturated: F = 0 below the window, T above it.

    Conservative (a few edges too many are harmless: inside the window F is computed
    exactly): |v - mu| > (SIGMOID_RANGE + 1/256) s puts the rounded table index beyond
    the table's end, where the entries are 0 and 2^16 (`tables`)."""
    _, inv_scale, _ = tables()
    reach = ((SIGMOID_RANGE << SIGMOID_BITS) + 1) << (_ACT + INV_SCALE_BITS - SIGMOID_BITS)
    radius = reach // inv_scale[ln_index] + 1  # (n, K), at 2^-12
    low = np.min(mu - radius, axis=1)
    high = np.max(mu + radius, axis=1)
    # edge i is v_i = (2 i - 1) 2^11: the first i with v_i >= low, the last with v_i <= high
    first = np.clip(((low >> (_ACT - 1)) + 1) // 2, 1, NUM_VALUES)
    last = np.clip(((high >> (_ACT - 1)) + 1) // 2 + 1, 0, NUM_VALUES - 1)
    return first, np.maximum(last, first - 1)


@functools.lru_cache(maxsize=1)
def _outside_rows() -> np.ndarray:
    """int32 (256, 255): row L holds c_1 .. c_255 of a row whose F is 0 up to edge L and
    T above it, i + M [i > L]; a row's edges outside its window are those of row last."""
    i = np.arange(1, NUM_VALUES, dtype=np.int32)
    last = np.arange(NUM_VALUES, dtype=np.int32)[:, None]
    return i + _MASS * (i > last).astype(np.int32)


def lookup_rows(mu: np.ndarray, ln_index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The coder's rows as tfc's lookup wants them, int32 (n, 259): the precision, then
    c_0 .. c_257 of the module docstring.

    F is computed only inside each row's window (`_windows`); rows are grouped by the
    window's width, so that a narrow distribution costs a few edges, not 255."""
    n = mu.shape[0]
    width = 3 + NUM_VALUES
    out = np.empty((n, width), np.int32)
    out[:, 0] = PRECISION
    out[:, 1] = 0
    out[:, -2] = NUM_VALUES + _MASS
    out[:, -1] = 2**PRECISION
    first, last = _windows(mu, ln_index)
    out[:, 2:-2] = _outside_rows()[last]  # F = 0 below the window, T above it
    span = last - first + 1
    bound = 0
    flat = out.reshape(-1)
    for top in (8, 12, 16, 24, 32, 48, 64, 96, 128, NUM_VALUES - 1):
        rows = np.nonzero((span > bound) & (span <= top))[0]
        bound = top
        if not rows.size:
            continue
        cols = np.minimum(first[rows, None] + np.arange(top), NUM_VALUES - 1)  # (m, top)
        values = cols + _edge_cdf(mu[rows], ln_index[rows], weights[rows], _edge(cols))
        flat[rows[:, None] * width + cols + 1] = values  # c_i sits in column i + 1
    return out


def cdf_rows(mu: np.ndarray, ln_index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The coder's CDFs, int64 (n, 258): c_0 .. c_257 of the module docstring."""
    return lookup_rows(mu, ln_index, weights)[:, 1:].astype(np.int64)


def value_intervals(mu, ln_index, weights, values) -> tuple[np.ndarray, np.ndarray]:
    """(c_x, c_(x+1)) of each row's value x: what the range coder codes x with."""
    x = np.asarray(values, np.int64)[:, None]
    both = np.concatenate([x, x + 1], axis=1)  # (n, 2) CDF indices
    inside = (both >= 1) & (both <= NUM_VALUES - 1)
    cdf = both + _edge_cdf(mu, ln_index, weights, _edge(np.clip(both, 1, NUM_VALUES - 1)))
    cdf = np.where(inside, cdf, np.where(both <= 0, 0, NUM_VALUES + _MASS))
    return cdf[:, 0], cdf[:, 1]


def interval_rows(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of three symbols [0, a, b, 2^16] and the symbol (0 or 1) whose interval is
    [lower, upper): tfc's encoder writes the same bits for a symbol whatever the rest
    of its row, so the encoder codes x with these instead of the whole 258-entry CDF.
    Valid for the intervals of `value_intervals` (upper <= 2^16 - 1, the escape's
    frequency above it; lower = 0 only for x = 0)."""
    lower, upper = np.asarray(lower, np.int64), np.asarray(upper, np.int64)
    first = lower == 0
    a = np.where(first, upper, lower)
    b = np.where(first, upper + 1, upper)
    n = len(lower)
    rows = np.stack([np.zeros(n, np.int64), a, b, np.full(n, 2**PRECISION)], axis=1)
    return rows, np.where(first, 0, 1)


def _chunks(outputs, x_l, residuals, channel: int, mixtures: int, tau: int):
    """(slice, channel_parameters) of each run of at most CHUNK values: one string each."""
    for start in range(0, len(x_l), CHUNK):
        part = slice(start, start + CHUNK)
        params = channel_parameters(outputs[part], x_l[part], residuals[part], channel,
                                    mixtures, tau)  # fmt: skip
        yield part, params


def encode_channel(outputs, x_l, residuals, channel: int, mixtures: int, tau: int) -> list[bytes]:
    """One channel's values (x = x_l + r), as strings of at most CHUNK values each."""
    values = x_l[:, channel] + residuals[:, channel]
    strings = []
    for part, params in _chunks(outputs, x_l, residuals, channel, mixtures, tau):
        rows, symbols = interval_rows(*value_intervals(*params, values[part]))
        coder = Coder.from_matrix(rows, PRECISION)
        strings.append(coder.encode(np.arange(len(rows)), symbols))
    return strings


def channel_bits(outputs, x_l, residuals, channel: int, mixtures: int, tau: int) -> float:
    """The bits that `encode_channel` spends on the channel's values, to the range
    coder's termination (exact interval widths, no coding)."""
    values = x_l[:, channel] + residuals[:, channel]
    total = 0.0
    for part, params in _chunks(outputs, x_l, residuals, channel, mixtures, tau):
        lower, upper = value_intervals(*params, values[part])
        total += float(np.sum(PRECISION - np.log2((upper - lower).astype(np.float64))))
    return total


def decode_channel(strings: list[bytes], outputs, x_l, residuals, channel: int, mixtures: int,
                   tau: int, what: str) -> np.ndarray:  # fmt: skip
    """The channel's values (int64 (n,)), decoded from its strings; BitstreamError if a
    string does not decode or decodes to a value outside [0, 255]."""
    n = len(x_l)
    if len(strings) != num_chunks(n):
        raise BitstreamError(f"{what}: {len(strings)} strings for channel {channel}, "
                             f"not {num_chunks(n)}.")  # fmt: skip
    values = []
    chunks = _chunks(outputs, x_l, residuals, channel, mixtures, tau)
    for string, (part, params) in zip(strings, chunks, strict=True):
        coder = Coder.from_lookup_rows(lookup_rows(*params))
        decoded = coder.decode(string, np.arange(len(x_l[part])), what)
        if decoded.size and (decoded.min() < 0 or decoded.max() >= NUM_VALUES):
            raise BitstreamError(f"{what}: a value outside [0, 255] (damaged file).")
        values.append(decoded)
    return np.concatenate(values) if values else np.zeros(0, np.int64)


def num_chunks(n: int) -> int:
    return -(-n // CHUNK)
