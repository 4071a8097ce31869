"""Stochastic Gumbel Annealing (Yang, Bamler & Mandt, "Improving inference for neural image
compression", NeurIPS 2020): per-image refinement of an amortised codec's latents.

Each latent v sits between the two grid points around it, floor and ceil (for y the grid
is shifted by the predicted mean: round(y - mu) + mu). SGA replaces hard rounding by a
sample of a tempered two-way Gumbel-softmax whose logits favour the nearer grid point,

    logits = (-atanh(v - floor) / tau, -atanh(ceil - v) / tau),
    w = softmax((logits + Gumbel noise) / tau),   v_tilde = w_0 floor + w_1 ceil,

and anneals the temperature tau(t) = clip(0.5 exp(-r (t - t0)), 1e-8, 0.5) (r = 5e-4,
t0 = 200) so that the samples become hard rounding; gradients flow to v through the
logits. After refinement the latents are hard-rounded and coded as usual.
"""

import tensorflow as tf

# atanh(+-1) is infinite: distances are kept inside (-1, 1).
_EDGE = 1e-5


def temperature(step, max_tau=0.5, min_tau=1e-8, rate=5e-4, start=200):
    """tau(t) = clip(max_tau * exp(-rate * (t - start)), min_tau, max_tau)."""
    t = tf.cast(step, tf.float32)
    return tf.clip_by_value(max_tau * tf.exp(-rate * (t - start)), min_tau, max_tau)


def sga_sample(v, tau, loc=None, seed=None):
    """A relaxed rounding of v (to the integers, or to loc + integers), differentiable in v.

    `seed` is a stateless seed (shape [2]); None draws from the global generator.
    """
    centred = v if loc is None else v - loc
    floor = tf.stop_gradient(tf.floor(centred))
    ceil = floor + 1.0
    down = tf.clip_by_value(centred - floor, -1.0 + _EDGE, 1.0 - _EDGE)
    up = tf.clip_by_value(ceil - centred, -1.0 + _EDGE, 1.0 - _EDGE)
    logits = tf.stack([-tf.atanh(down), -tf.atanh(up)], axis=-1) / tau
    shape = tf.shape(logits)
    uniform = (
        tf.random.uniform(shape, 1e-10, 1.0)
        if seed is None
        else tf.random.stateless_uniform(shape, seed, 1e-10, 1.0)
    )
    gumbel = -tf.math.log(-tf.math.log(uniform))
    weights = tf.nn.softmax((logits + gumbel) / tau, axis=-1)
    sample = weights[..., 0] * floor + weights[..., 1] * ceil
    return sample if loc is None else sample + loc
