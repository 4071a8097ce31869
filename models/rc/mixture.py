"""RC's distribution of a pixel given x_l: a discretised logistic mixture, R -> G -> B.

RC (Mentzer et al., CVPR 2020), after PixelCNN++ (Salimans et al., ICLR 2017) and L3C
(Mentzer et al., CVPR 2019): each 8-bit value x_c of a pixel is coded with a mixture of
K logistics whose parameters the residual CNN predicts from the lossy reconstruction
x_l; the channels are coupled through the residuals r = x - x_l of the channels coded
before (all pixels in parallel, R, then G, then B):

    mu_R,k = x_l,R + d_R,k
    mu_G,k = x_l,G + d_G,k + a_GR,k r_R
    mu_B,k = x_l,B + d_B,k + a_BR,k r_R + a_BG,k r_G

    P(x_c) = sum_k w_c,k [F_k(x_c + 1/2) - F_k(x_c - 1/2)],  w_c = softmax(pi_c),
    F_k(v) = sigmoid((v - mu_c,k) / s_c,k),

with the support truncated to what x allows, 0 <= x <= 255 (RC's 0 <= x_l + r <= 255):
F(-1/2) is taken as 0 and F(255 + 1/2) as 1, so the mass beyond either end goes to the
end values (PixelCNN++'s edge cases), and none is spent on values that cannot occur.

The network's 12 K outputs per pixel, channel-major within each group:

    [0, 3K)    d_c,k        mean offsets from x_l, 8-bit units
    [3K, 6K)   ln s_c,k - LN_SCALE_SHIFT, ln s clipped to LN_SCALE_RANGE
    [6K, 9K)   pi_c,k       mixture logits
    [9K, 12K)  a_GR,k, a_BR,k, a_BG,k, times COUPLING_SCALE, clipped to +-COUPLING_LIMIT

Every clip passes the gradient straight through, as lossless C3's do. The coder
(`coding.rc.mixture`) computes the same distribution in integer arithmetic from the
fixed-point network's outputs: one quantised CDF per coded value, identical on the
encoder and on every decoder.
"""

import functools
import math

import tensorflow as tf

from models.c3.synthesis import straight_through_clip

OUTPUTS_PER_COMPONENT = 12  # 3 channels x (mean, ln-scale, logit, coupling)
LN_SCALE_SHIFT = 0.0  # ln s = output: a zero output predicts s = 1 (an 8-bit value)
LN_SCALE_RANGE = (-4.0, 6.0)  # s in [0.018, 403]: from a certain value to a flat one
MEAN_RANGE = (-64.0, 319.0)  # means beyond [0, 255] are legal (the mass goes to an end)
COUPLING_BITS = 6  # a = output / 64: the coupling moves slowly, as lossless C3's
COUPLING_SCALE = 2.0**-COUPLING_BITS
COUPLING_LIMIT = 4.0
# The components start with ln-scales spread by this much around 0 (and the tail's
# weights random, small): K identical components get identical gradients and would
# never tell apart.
INITIAL_LN_SCALE_SPREAD = 0.5


def num_outputs(mixtures: int) -> int:
    return OUTPUTS_PER_COMPONENT * mixtures


def initial_tail_bias(mixtures: int) -> list[float]:
    """The residual CNN's tail bias at initialisation: zero, but the ln-scales spread."""
    k = mixtures
    spread = [INITIAL_LN_SCALE_SPREAD * (i - (k - 1) / 2) for i in range(k)]
    return [0.0] * 3 * k + spread * 3 + [0.0] * 6 * k


def split(outputs: tf.Tensor, mixtures: int):
    """(d, ln-scale outputs, logits, coupling outputs), each (..., 3, K); the coupling's
    three rows are a_GR, a_BR, a_BG."""
    k = mixtures
    shape = tf.concat([tf.shape(outputs)[:-1], [4, 3, k]], axis=0)
    parts = tf.reshape(outputs, shape)
    return parts[..., 0, :, :], parts[..., 1, :, :], parts[..., 2, :, :], parts[..., 3, :, :]


def component_means(outputs: tf.Tensor, x_l: tf.Tensor, x: tf.Tensor, mixtures: int):
    """mu (..., 3, K) in 8-bit units, from the outputs, x_l and x (floats, (..., 3));
    only the residuals of channels coded before a channel enter its means."""
    d, _, _, a = split(outputs, mixtures)
    a = straight_through_clip(COUPLING_SCALE * a, -COUPLING_LIMIT, COUPLING_LIMIT)
    r = (x - x_l)[..., None]  # (..., 3, 1)
    base = x_l[..., None] + d
    mu_r = base[..., 0, :]
    mu_g = base[..., 1, :] + a[..., 0, :] * r[..., 0, :]
    mu_b = base[..., 2, :] + a[..., 1, :] * r[..., 0, :] + a[..., 2, :] * r[..., 1, :]
    return straight_through_clip(tf.stack([mu_r, mu_g, mu_b], axis=-2), *MEAN_RANGE)


def log_probabilities(outputs: tf.Tensor, x_l: tf.Tensor, x: tf.Tensor, mixtures: int):
    """ln P(x_c) (..., 3) of every 8-bit value of x (floats) under its mixture."""
    _, ln_s, logits, _ = split(outputs, mixtures)
    mu = component_means(outputs, x_l, x, mixtures)
    ln_s = straight_through_clip(ln_s + LN_SCALE_SHIFT, *LN_SCALE_RANGE)
    inv_s = tf.exp(-ln_s)
    v = x[..., None]  # (..., 3, 1)
    upper = (v + 0.5 - mu) * inv_s
    lower = (v - 0.5 - mu) * inv_s
    # ln(sigmoid(u) - sigmoid(l)) = ln sigmoid(u) + ln(1 - sigmoid(l)) + ln(1 - e^(l - u)),
    # stable everywhere; l - u = -1/s. At the ends of the support the term that would be
    # sigmoid(+inf) or sigmoid(-inf) drops out.
    ln_cdf_upper = -tf.nn.softplus(-upper)  # ln F(x + 1/2)
    ln_sf_lower = -tf.nn.softplus(lower)  # ln (1 - F(x - 1/2))
    ln_width = tf.math.log(-tf.math.expm1(-inv_s))
    middle = ln_cdf_upper + ln_sf_lower + ln_width
    at_zero = tf.equal(v, 0.0)
    at_top = tf.equal(v, 255.0)
    ln_p = tf.where(at_zero, ln_cdf_upper, tf.where(at_top, ln_sf_lower, middle))
    return tf.reduce_logsumexp(tf.nn.log_softmax(logits, axis=-1) + ln_p, axis=-1)


def bits(outputs: tf.Tensor, x_l: tf.Tensor, x: tf.Tensor, mixtures: int) -> tf.Tensor:
    """Bits (..., 3) of every 8-bit value of x under its mixture."""
    return -log_probabilities(outputs, x_l, x, mixtures) / math.log(2.0)


@functools.cache
def _compiled_bits(mixtures: int):
    return tf.function(lambda o, x_l, x: bits(o, x_l, x, mixtures), jit_compile=True)


def fused_bits(outputs: tf.Tensor, x_l: tf.Tensor, x: tf.Tensor, mixtures: int) -> tf.Tensor:
    """`bits` compiled by XLA into a few fused kernels: its ~25 elementwise steps over
    (B, H, W, 3, K) dominate a training step of the small residual CNN otherwise
    (forward and backward 2.5x faster on this CPU; the same values and gradients to
    float32 rounding). For training; the coder never uses the float model."""
    return _compiled_bits(int(mixtures))(outputs, x_l, x)
