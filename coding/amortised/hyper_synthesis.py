"""The mean-scale hyper-synthesis in fixed point: the same (mu, scale index) everywhere.

The hyper-synthesis decides the probabilities of every element of y: its mean and the
index of its scale in the 64-entry table. A one-ulp difference between the encoder's and
the decoder's float outputs that moves a mean across a rounding boundary or a scale
across a table bucket corrupts every later symbol ("Integer networks for data
compression with latent-variable models", Balle, Johnston & Minnen, ICLR 2019). So both
sides run this copy of the trained hyper-synthesis, in integers held in float64 (see
coding/fixed_point.py for why that is exact whatever the summation order):

- the input z_hat is integer; activations are integers at scale 2^-12, clamped to
  +-4096.0; weights are quantised per layer to the finest step 2^-k (k <= 16) that keeps
  every integer within the format's limits, biases to the same step;
- each transposed convolution accumulates exactly, adds the bias and shifts back to the
  activation scale (round half up); ReLU between layers;
- mu = output / 4096 (exact in float32); the scale index is the number of fixed-point
  bucket boundaries at or below the output log-scale (integer comparisons), i.e. the
  rounded continuous index of models.amortised.hyperprior.scale_index.

Weights are quantised from the float32 checkpoint by exact arithmetic, so encoder and
decoder derive the same integers from the same checkpoint.
"""

import numpy as np
import tensorflow as tf

from coding import fixed_point
from models.amortised import hyperprior


def scale_index_boundaries() -> np.ndarray:
    """Log-scale boundaries (integers at 2^-12) between consecutive scale indexes."""
    step = hyperprior.SCALE_INDEX_STEP
    return np.array(
        [
            fixed_point.to_fixed(
                hyperprior.LOG_SCALE_MIN + (j - 0.5) * step, fixed_point.ACTIVATION_BITS
            )
            for j in range(1, hyperprior.NUM_SCALES)
        ],
        np.float64,
    )


class FixedPointHyperSynthesis:
    """z_hat -> (mu, scale indexes), bit-exact on every machine."""

    def __init__(self, hyper_synthesis):
        self.latent_channels = hyper_synthesis.latent_channels
        self.layers = []  # (kernel, accumulator bias, weight step, stride)
        for i, layer in enumerate(hyper_synthesis.stack):
            if not isinstance(layer, tf.keras.layers.Conv2DTranspose):
                raise TypeError(f"hyper-synthesis layer {i} is not a transposed convolution.")
            # Keras keeps transposed kernels as (k, k, out, in); fan-in axes go first.
            kernel = np.transpose(layer.kernel.numpy().astype(np.float64), (0, 1, 3, 2))
            weights, acc_bias, bits = fixed_point.quantise_layer(
                kernel, layer.bias.numpy(), f"hyper-synthesis layer {i}"
            )
            weights = np.transpose(weights, (0, 1, 3, 2))
            self.layers.append(
                (tf.constant(weights), tf.constant(acc_bias), 2.0**-bits, int(layer.strides[0]))
            )
        self.boundaries = scale_index_boundaries()

    def parameters_bytes(self) -> bytes:
        """The quantised parameters (for the model fingerprint)."""
        return b"".join(w.numpy().tobytes() + b.numpy().tobytes() for w, b, _, _ in self.layers)

    def __call__(self, z_hat) -> tuple[tf.Tensor, tf.Tensor]:
        """z_hat (1, h, w, C) integers -> mu (1, 4h, 4w, M) float32, indexes int32."""
        with tf.device(fixed_point.EXACT_DEVICE):  # exact on any machine: see there
            return self._call(z_hat)

    def _call(self, z_hat) -> tuple[tf.Tensor, tf.Tensor]:
        limit = float(fixed_point.ACTIVATION_LIMIT)
        scale = 2.0**fixed_point.ACTIVATION_BITS
        x = tf.clip_by_value(tf.cast(z_hat, tf.float64) * scale, -limit, limit)
        for i, (weights, acc_bias, step, stride) in enumerate(self.layers):
            shape = tf.shape(x)
            out_shape = [shape[0], shape[1] * stride, shape[2] * stride, weights.shape[2]]
            accumulator = tf.nn.conv2d_transpose(x, weights, out_shape, stride, "SAME")
            layer = fixed_point.FixedPointLayer(weights, acc_bias, step)
            x = layer.rescale(accumulator)
            if i < len(self.layers) - 1:
                x = tf.nn.relu(x)
        mu_int, log_scale_int = x[..., : self.latent_channels], x[..., self.latent_channels :]
        mu = tf.cast(mu_int / scale, tf.float32)
        indexes = np.searchsorted(self.boundaries, log_scale_int.numpy(), side="right")
        return mu, tf.constant(indexes.astype(np.int32))
