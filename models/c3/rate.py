"""Rate estimates of C3: discretised Laplace bits of latents and of network parameters.

Latents (Kim et al. 2023, C3, arXiv 2312.02753; COOL-CHIC, arXiv 2212.05458): a symbol y
with predicted Laplace(mu, b), all in units of the quantisation step, costs
-log2(F(y + 1/2) - F(y - 1/2)) bits, capped at 16 bits. `tfc.NoisyLaplace(mu, b).prob`
is exactly that difference of CDFs (the Laplace convolved with U(-1/2, 1/2)).

Network parameters: C3 charges each quantised parameter array the bits of a zero-mean
discretised Laplace whose scale is std/sqrt(2) of the array's integers (at least 1e-3),
capped at 32 bits per value, and no side information.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

MAX_BITS_PER_LATENT = 16.0
MAX_BITS_PER_PARAMETER = 32.0


def laplace_bits(y: tf.Tensor, loc: tf.Tensor, scale: tf.Tensor, max_bits: float) -> tf.Tensor:
    """Bits of each (possibly noisy) symbol y under a discretised Laplace(loc, scale)."""
    log_prob = tfc.NoisyLaplace(loc=loc, scale=scale).log_prob(y)
    return tf.minimum(-log_prob / math.log(2.0), max_bits)


def latent_bits(symbols, loc, scale, q_step: float) -> tf.Tensor:
    """Bits of latents given in symbol units, with (loc, scale) in value units."""
    return laplace_bits(symbols, loc / q_step, scale / q_step, MAX_BITS_PER_LATENT)


def parameter_bits(integers: np.ndarray) -> float:
    """C3's estimate of the bits of one array of quantised (integer) network parameters."""
    q = np.asarray(integers, np.float32).ravel()
    if q.size == 0:
        return 0.0
    scale = max(float(np.std(q)) / math.sqrt(2.0), 1e-3)
    bits = laplace_bits(q, np.zeros_like(q), np.full_like(q, scale), MAX_BITS_PER_PARAMETER)
    return float(tf.reduce_sum(bits))
