"""Quantisers for C3 latents: noisy soft-rounding, straight-through rounding, hard rounding.

All functions work in *symbol units*: the input `y` is a latent divided by its
quantisation step, so that the quantised value is an integer.

Stage 1 of C3 fitting (Kim et al. 2023, "C3: High-performance and low-complexity neural
compression from a single image or video", arXiv 2312.02753, Sec. 3) simulates
quantisation with soft-rounding followed by additive noise and the soft-round conditional
mean (Agustsson & Theis 2020, "Universally Quantized Neural Compression", Sec. 4.1):

    y_tilde = r_T(s_T(y) + u),   u ~ Kumaraswamy(a, b) - 1/2,

where s_T is soft-rounding at temperature T (alpha = 1/T), r_T the conditional mean and
b is chosen so that the noise's mode is 0 (a = 1 gives uniform noise). Stage 2 rounds in
the forward pass and uses the gradient of soft-rounding at a tiny temperature.

Cool-chic 5 (Ladune et al., arXiv 2605.02726) replaces stage 1's proxy by Gaussian noise
between two soft-roundings (`gaussian_soft_round`, `fit.noise = "gaussian"`).
"""

import tensorflow as tf
import tensorflow_compression as tfc


def kumaraswamy_b(a: tf.Tensor) -> tf.Tensor:
    """The Kumaraswamy `b` that puts the mode of Kumaraswamy(a, b) at 1/2."""
    return (tf.pow(2.0, a) * (a - 1.0) + 1.0) / a


def kumaraswamy_noise(shape, a, seed) -> tf.Tensor:
    """Noise in [-1/2, 1/2] from Kumaraswamy(a, b(a)) - 1/2, by inverse-CDF sampling.

    Args:
      shape: shape of the noise.
      a: Kumaraswamy `a` (>= 1); a = 1 is uniform noise, larger is more peaked.
      seed: int32 tensor of shape [2] for `tf.random.stateless_uniform`, so that a fit
        is reproducible and the step compiles under XLA.
    """
    a = tf.convert_to_tensor(a, tf.float32)
    b = kumaraswamy_b(a)
    # Keep u away from 0 and 1 so that the powers below stay finite in float32.
    u = tf.random.stateless_uniform(shape, seed, minval=1e-6, maxval=1.0 - 1e-6)
    sample = tf.pow(1.0 - tf.pow(1.0 - u, 1.0 / b), 1.0 / a)
    return sample - 0.5


def noisy_soft_round(y, temperature, kumaraswamy_a, seed) -> tf.Tensor:
    """Stage-1 quantisation proxy: soft-round, add Kumaraswamy noise, conditional mean."""
    alpha = 1.0 / temperature
    noise = kumaraswamy_noise(tf.shape(y), kumaraswamy_a, seed)
    return tfc.soft_round_conditional_mean(tfc.soft_round(y, alpha) + noise, alpha)


def gaussian_soft_round(y, temperature, std, seed) -> tf.Tensor:
    """Cool-chic 5's stage-1 proxy: soft-round, add Gaussian noise of std `std`, and
    soft-round again (not the conditional mean): s_T(s_T(y) + n), n ~ N(0, std^2)."""
    alpha = 1.0 / temperature
    noise = tf.random.stateless_normal(tf.shape(y), seed, stddev=std)
    return tfc.soft_round(tfc.soft_round(y, alpha) + noise, alpha)


def ste_soft_round(y, temperature) -> tf.Tensor:
    """Stage-2 quantisation: round in the forward pass, soft-round gradient backwards."""
    soft = tfc.soft_round(y, 1.0 / temperature)
    return soft + tf.stop_gradient(tf.round(y) - soft)


def hard_round(y) -> tf.Tensor:
    """Evaluation / coding: plain rounding (half to even, as the coder does)."""
    return tf.round(y)
