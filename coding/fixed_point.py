"""Fixed-point arithmetic shared by the C3 encoder and decoder: same numbers everywhere.

A neural codec decodes only if the decoder computes bit-identical probabilities (and, for
a reconstruction that matches the encoder's report, bit-identical pixels). Float matmuls
differ with thread count, batch shape, XLA and hardware, so COOL-CHIC moved its context
model to fixed-point integers (Ladune et al., "COOL-CHIC", arXiv 2212.05458; Cool-chic
v3+), as Ballé et al. argue in "Integer networks for data compression with latent-variable
models" (ICLR 2019).

Here every network of the decoder runs in fixed point:
- activations are integers at scale 2^-ACTIVATION_BITS;
- weights and biases are the quantised integers of the fitted model: their steps are
  powers of two (2^-k), so `integer * step` is exactly a fixed-point number;
- a dense layer accumulates `activations @ weights + bias`, exactly, then shifts back to
  the activation scale with round-half-up;
- GELU is a table of its values at knots 2^-GELU_KNOT_BITS apart, linearly interpolated
  in integer arithmetic, built once with Python's `decimal` (correctly rounded, so the
  same on every machine).

The integers are held in float64 tensors. Products and sums of integers below 2^53 are
exact in IEEE doubles whatever the order of summation, so BLAS matmuls (any thread count,
with or without XLA or FMA) give identical results. `check_layer_bounds` proves, per
layer, that no partial sum can reach 2^53: activations are clamped to ACTIVATION_LIMIT
and weights are limited to WEIGHT_LIMIT by the format.
"""

import decimal
import functools

import numpy as np
import tensorflow as tf

from models.c3.fit import is_power_of_two
from models.c3.model import MAX_NETWORK_INTEGER

# The device of every exact (fixed-point) computation, on encoder and decoder side alike.
# Integer-valued float64 arithmetic is exact only if every product and sum is computed as
# written: the CPU kernels do, a GPU's cuDNN may pick a transform-based convolution (FFT,
# Winograd) that rounds. The networks are kilo-parameter sized, so the CPU costs little;
# tfc's range coder runs there anyway.
EXACT_DEVICE = "/CPU:0"

ACTIVATION_BITS = 12  # activations are integers at scale 2^-12
ACTIVATION_LIMIT = 2**24  # |activation| <= 4096.0, clamped after every layer
WEIGHT_LIMIT = MAX_NETWORK_INTEGER  # |quantised weight or bias integer| <= 2^19
SYMBOL_LIMIT = 2**12  # |latent symbol| <= 4096: the format's range
MULTIPLIER_BITS = 16  # q_step and 1 / q_step as integers at scale 2^-16
UPSAMPLING_BITS = 8  # bilinear weights at scale 2^-8 per axis
GELU_KNOT_BITS = 6  # GELU table knots every 2^-6
GELU_RANGE = 8  # the table covers [-8, 8]; outside, GELU(x) = max(x, 0) to 1e-14
EXACT_LIMIT = 2.0**53  # every integer below this is exact in float64

DECIMAL_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510")
# Correctly rounded decimal arithmetic: constants the same on every machine.
DECIMAL_CONTEXT = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)


def round_shift(x, bits: int):
    """floor(x / 2^bits + 1/2) for integer-valued float64 tensors (round half up)."""
    if bits == 0:
        return x
    return tf.floor(x * (0.5**bits) + 0.5)


def to_fixed(value: float, bits: int) -> int:
    """round(value * 2^bits), computed exactly from the binary value of `value`."""
    scaled = decimal.Decimal(float(value)) * (2**bits)
    return int(scaled.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def decimal_ln(value: float, bits: int) -> int:
    """round(ln(value) * 2^bits), correctly rounded on every platform."""
    if value <= 0:
        raise ValueError(f"ln of a non-positive number {value}.")
    ln = DECIMAL_CONTEXT.ln(decimal.Decimal(float(value)))
    return int((ln * (2**bits)).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def _gelu_tanh(x: decimal.Decimal) -> decimal.Decimal:
    # x * sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3): JAX's and C3's GELU.
    z = DECIMAL_CONTEXT.sqrt(2 / DECIMAL_PI) * (x + decimal.Decimal("0.044715") * x**3)
    return x / (1 + DECIMAL_CONTEXT.exp(-2 * z))


def _gelu_erf(x: decimal.Decimal) -> decimal.Decimal:
    # x * Phi(x) with erf from its Taylor series (converges for all x; |x| <= 8 here).
    z = x / DECIMAL_CONTEXT.sqrt(decimal.Decimal(2))
    term, total, n = z, z, 0
    while abs(term) > decimal.Decimal(10) ** -30:
        n += 1
        term = -term * z * z / n
        total += term / (2 * n + 1)
    erf = 2 / DECIMAL_CONTEXT.sqrt(DECIMAL_PI) * total
    return x / 2 * (1 + erf)


@functools.lru_cache(maxsize=2)
def gelu_residual_table(approximate: bool) -> np.ndarray:
    """GELU(x) - max(x, 0) at x = i / 2^GELU_KNOT_BITS, |x| <= GELU_RANGE, fixed point.

    The residual goes to 0 at both ends of the range, so clamping the table index gives
    GELU everywhere: GELU(x) = max(x, 0) + residual(clamp(x)).
    """
    gelu = _gelu_tanh if approximate else _gelu_erf
    knots = 2**GELU_KNOT_BITS
    values = []
    with decimal.localcontext(DECIMAL_CONTEXT):
        for i in range(-GELU_RANGE * knots, GELU_RANGE * knots + 1):
            x = decimal.Decimal(i) / knots
            residual = gelu(x) - max(x, decimal.Decimal(0))
            scaled = residual * (2**ACTIVATION_BITS)
            values.append(int(scaled.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)))
    return np.asarray(values, np.float64)


@functools.lru_cache(maxsize=2)
def gelu_lookup_table(approximate: bool) -> np.ndarray:
    """The GELU residual at every activation value in [-GELU_RANGE, GELU_RANGE).

    Linear interpolation of `gelu_residual_table` between its knots, in exact integer
    arithmetic, expanded once so that evaluating GELU is a single gather.
    """
    knots = gelu_residual_table(approximate).astype(np.int64)
    step_bits = ACTIVATION_BITS - GELU_KNOT_BITS
    x = np.arange(-GELU_RANGE * 2**ACTIVATION_BITS, GELU_RANGE * 2**ACTIVATION_BITS)
    knot = x >> step_bits
    frac = x - (knot << step_bits)
    index = knot + GELU_RANGE * 2**GELU_KNOT_BITS
    lower, upper = knots[index], knots[index + 1]
    # floor(a / 2^s + 1/2), as `round_shift`.
    residual = lower + (((upper - lower) * frac + 2 ** (step_bits - 1)) >> step_bits)
    return residual.astype(np.float64)


def gelu(x: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """Fixed-point GELU of integer-valued float64 `x`; `table` is `gelu_lookup_table`."""
    edge = float(GELU_RANGE * 2**ACTIVATION_BITS)
    index = tf.cast(tf.clip_by_value(x, -edge, edge - 1.0) + edge, tf.int32)
    return tf.nn.relu(x) + tf.gather(table, index)


def step_bits(step: float, name: str) -> int:
    """k such that step = 2^-k; the format allows only power-of-two steps."""
    if not is_power_of_two(step):
        raise ValueError(f"{name} {step} is not a power of two.")
    return int(1 - np.frexp(step)[1])


def check_layer_bounds(weights: np.ndarray, bias: np.ndarray, what: str) -> None:
    """Raises ValueError unless the fixed-point layer is exact in float64.

    The worst partial sum is ACTIVATION_LIMIT * sum over the fan-in of |weight| plus the
    bias (already at the accumulator scale).
    """
    w = np.abs(np.asarray(weights, np.float64))
    fan_in_axes = tuple(range(w.ndim - 1))
    worst = ACTIVATION_LIMIT * float(np.max(np.sum(w, axis=fan_in_axes), initial=0.0))
    worst += float(np.max(np.abs(bias), initial=0.0))
    if not worst < EXACT_LIMIT:
        raise ValueError(f"{what}: fixed-point sums could reach {worst:.3g} >= 2^53.")


def layer_parameters(
    weights: np.ndarray, bias: np.ndarray, weight_bits: int, bias_bits: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Checks one quantised layer and returns (kernel, accumulator bias) as float64.

    The parameters are weights * 2^-weight_bits and bias * 2^-bias_bits. The bias is
    returned at the accumulator's scale 2^-(ACTIVATION_BITS + weight_bits).
    Raises ValueError when the layer is outside the format's range.
    """
    weights = np.asarray(weights, np.int64)
    bias = np.asarray(bias, np.int64)
    largest = max(np.abs(weights).max(initial=0), np.abs(bias).max(initial=0))
    if largest > WEIGHT_LIMIT:
        raise ValueError(f"{what}: a quantised parameter exceeds {WEIGHT_LIMIT}.")
    bias_shift = ACTIVATION_BITS + weight_bits - bias_bits
    if bias_shift < 0:
        raise ValueError(f"{what}: bias step 2^-{bias_bits} finer than the accumulator.")
    accumulator_bias = bias.astype(np.float64) * 2.0**bias_shift
    check_layer_bounds(weights, accumulator_bias, what)
    return weights.astype(np.float64), accumulator_bias


MAX_WEIGHT_BITS = 16  # the finest step of a trained network's quantised weights


def finest_weight_bits(kernel: np.ndarray, bias: np.ndarray, what: str) -> int:
    """The finest power-of-two step (2^-k, k <= MAX_WEIGHT_BITS) that keeps a trained
    layer within the format's limits and exact; `kernel` has its fan-in axes first."""
    for bits in range(MAX_WEIGHT_BITS, -1, -1):
        weights = np.round(kernel * 2.0**bits)
        ints = np.round(bias * 2.0**bits)
        if max(np.abs(weights).max(initial=0), np.abs(ints).max(initial=0)) > WEIGHT_LIMIT:
            continue
        try:
            check_layer_bounds(weights, ints * 2.0**ACTIVATION_BITS, what)
        except ValueError:
            continue
        return bits
    raise ValueError(f"{what}: weights too large for the fixed-point format.")


def quantise_layer(kernel, bias, what: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(integer kernel, accumulator bias, k) of a trained float layer at its finest
    step 2^-k (`finest_weight_bits`), both as float64 (`layer_parameters`). The rounding
    is exact arithmetic on the float32 checkpoint, so every machine gets the same integers.
    """
    kernel = np.asarray(kernel, np.float64)
    bias = np.asarray(bias, np.float64)
    bits = finest_weight_bits(kernel, bias, what)
    weights, acc_bias = layer_parameters(
        np.round(kernel * 2.0**bits), np.round(bias * 2.0**bits), bits, bits, what
    )
    return weights, acc_bias, bits


class FixedPointLayer:
    """One layer (dense or conv kernel) of `layer_parameters`, evaluated in fixed point.

    `weight_step` is 2^-weight_bits (a float or a scalar tensor: a traced decoder takes it
    as an input, so that one compilation serves files with any step).
    """

    def __init__(self, kernel, accumulator_bias, weight_step):
        self.weights = kernel
        self.bias = accumulator_bias
        self.weight_step = weight_step

    def rescale(self, accumulator: tf.Tensor) -> tf.Tensor:
        """Accumulator (scale 2^-(12 + k)) + bias -> clamped activation (scale 2^-12)."""
        # round_shift by k bits: multiplying by 2^-k is exact.
        out = tf.floor((accumulator + self.bias) * self.weight_step + 0.5)
        limit = float(ACTIVATION_LIMIT)
        return tf.clip_by_value(out, -limit, limit)

    def dense(self, x: tf.Tensor) -> tf.Tensor:
        """x (n, fan_in) -> (n, fan_out), all at the activation scale."""
        return self.rescale(tf.matmul(x, self.weights))


def mlp(x: tf.Tensor, layers: list[FixedPointLayer], activation) -> tf.Tensor:
    """Dense layers with `activation` between them (none after the last): fixed-point
    GELU (`functools.partial(gelu, table=...)`) or ReLU, which is exact as it is."""
    for i, layer in enumerate(layers):
        x = layer.dense(x)
        if i < len(layers) - 1:
            x = activation(x)
    return x
