"""Amortised codecs: the factorized prior and the mean-scale hyperprior.

- `FactorizedPrior`: y = g_a(x) coded with a learned per-channel density
  (`tfc.NoisyDeepFactorized`), Balle et al., "End-to-end optimized image compression",
  ICLR 2017 (`bls2017`).
- `MeanScaleHyperprior`: side information z = h_a(y) with a factorized density; the
  hyper-synthesis predicts a Gaussian mean and scale for every element of y, coded with
  `tfc.LocationScaleIndexedEntropyModel(tfc.NoisyNormal, 64 scales 0.11 .. 256)`, Minnen
  et al., "Joint autoregressive and hierarchical priors for learned image compression",
  NeurIPS 2018, without the context model (`mbt2018_mean`); with shallow synthesis
  transforms it is Yang & Mandt, ICCV 2023 (`jpegl`, `two_layer_syn`, `two_layer_syn2`).

Images are RGB in [0, 1]; the loss is bpp + lambda * MSE on the 0..255 scale. Latents
are quantised on the integer grid (z) and around the predicted mean (y: round(y - mu) +
mu), with no offset heuristic, so that the codec's files decode to exactly the values the
quantised forward pass used. Training perturbs with uniform noise ("noise"), or, with
"mixed" quantisation, uses the noisy latents for the rate and straight-through rounded
latents for the synthesis.
"""

import tensorflow as tf
import tensorflow_compression as tfc

from common.metrics import psnr_from_mse_tensor

# The scale table of tfc's hyperprior examples: 64 scales log-spaced from 0.11 to 256.
# Written as literals (log(0.11), log(256)) so that every machine uses the same numbers.
NUM_SCALES = 64
LOG_SCALE_MIN = -2.2072749131897207
LOG_SCALE_MAX = 5.545177444479562
SCALE_INDEX_STEP = (LOG_SCALE_MAX - LOG_SCALE_MIN) / (NUM_SCALES - 1)
CODING_RANK = 3
QUANTIZATION_MODES = ("noise", "mixed")


def scale_from_index(index):
    """The Gaussian scale of (continuous) scale index `index`."""
    return tf.exp(LOG_SCALE_MIN + SCALE_INDEX_STEP * index)


def scale_index(log_scale):
    """The continuous scale index of a log scale (inverse of `scale_from_index`)."""
    return (log_scale - LOG_SCALE_MIN) / SCALE_INDEX_STEP


def latent_entropy_model(compression: bool = False) -> tfc.LocationScaleIndexedEntropyModel:
    """The entropy model of y given the hyper-synthesis's (mu, scale index)."""
    return tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal,
        NUM_SCALES,
        scale_from_index,
        coding_rank=CODING_RANK,
        compression=compression,
        range_coder_precision=16,
    )


def factorized_entropy_model(prior, compression: bool = False):
    """The entropy model of a factorized latent (bls2017's y, the hyperprior's z)."""
    return tfc.ContinuousBatchedEntropyModel(
        prior,
        coding_rank=CODING_RANK,
        compression=compression,
        offset_heuristic=False,
        range_coder_precision=16,
    )


def edge_pad_batch(x: tf.Tensor, multiple: int) -> tf.Tensor:
    """Pads (B, H, W, C) at the bottom and right to multiples of `multiple`, replicating the
    last row and column (cheaper to code than zeros; the padding is cropped after decoding)."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    padded_h = (height + multiple - 1) // multiple * multiple
    padded_w = (width + multiple - 1) // multiple * multiple
    rows = tf.minimum(tf.range(padded_h), height - 1)
    cols = tf.minimum(tf.range(padded_w), width - 1)
    return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)


class AmortisedModel(tf.keras.Model):
    """Common interface: `call(x, training)` returns the reconstruction and bits per image.

    `x` is (B, H, W, 3) in [0, 1] with H, W multiples of `total_stride` (the codec pads).
    Subclasses also give `decoder_macs(height, width)`: the multiply-accumulates of the
    decoder (synthesis and hyper-synthesis) for an image of that size.
    """

    total_stride = 16

    def __init__(self, analysis, synthesis, latent_channels: int, quantization: str, **kwargs):
        super().__init__(**kwargs)
        if quantization not in QUANTIZATION_MODES:
            raise ValueError(f"quantization must be one of {QUANTIZATION_MODES}.")
        self.analysis, self.synthesis = analysis, synthesis
        self.latent_channels = int(latent_channels)
        self.quantization = quantization

    def rd_terms(self, x, lmbda, training: bool) -> dict:
        """bpp, MSE (0..255), PSNR and loss = bpp + lmbda * MSE, means over the batch."""
        out = self(x, training=training)
        num_pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
        bpp_parts = {k: tf.reduce_mean(v) / num_pixels for k, v in out["bits"].items()}
        bpp = tf.add_n(list(bpp_parts.values()))
        mse = tf.reduce_mean(tf.math.squared_difference(x * 255.0, out["x_hat"] * 255.0))
        psnr = psnr_from_mse_tensor(mse)
        terms = {"loss": bpp + lmbda * mse, "bpp": bpp, "mse": mse, "psnr": psnr}
        terms.update({f"bpp_{k}": v for k, v in bpp_parts.items()})
        return terms


class FactorizedPrior(AmortisedModel):
    """y = g_a(x), coded with a learned factorized density; x_hat = g_s(y_hat)."""

    total_stride = 16

    def __init__(self, analysis, synthesis, latent_channels: int, quantization="noise", **kw):
        super().__init__(analysis, synthesis, latent_channels, quantization, **kw)
        self.prior = tfc.NoisyDeepFactorized(batch_shape=(self.latent_channels,))

    def call(self, x, training=False):
        y = self.analysis(x)
        y_tilde, bits = factorized_entropy_model(self.prior)(y, training=training)
        if training and self.quantization == "mixed":
            y_tilde = tfc.round_st(y)
        return {"x_hat": self.synthesis(y_tilde), "bits": {"y": bits}}

    def decoder_macs(self, height: int, width: int) -> dict:
        s = self.total_stride
        shape = (-(-height // s), -(-width // s), self.latent_channels)
        return {"synthesis": self.synthesis.macs(shape)[0], "hyper_synthesis": 0}


class MeanScaleHyperprior(AmortisedModel):
    """z = h_a(y); (mu, log sigma) = h_s(z_hat); y coded around mu with scale sigma."""

    total_stride = 64

    def __init__(
        self,
        analysis,
        synthesis,
        hyper_analysis,
        hyper_synthesis,
        latent_channels: int,
        hyper_channels: int,
        quantization="noise",
        **kw,
    ):
        super().__init__(analysis, synthesis, latent_channels, quantization, **kw)
        self.hyper_analysis, self.hyper_synthesis = hyper_analysis, hyper_synthesis
        self.hyper_channels = int(hyper_channels)
        self.prior = tfc.NoisyDeepFactorized(batch_shape=(self.hyper_channels,))

    def call(self, x, training=False):
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_tilde, bits_z = factorized_entropy_model(self.prior)(z, training=training)
        if training and self.quantization == "mixed":
            z_tilde = tfc.round_st(z)
        mu, log_scale = self.hyper_synthesis(z_tilde)
        indexes = scale_index(log_scale)
        if not training:
            indexes = tf.round(indexes)  # the codec codes with integer indexes
        y_tilde, bits_y = latent_entropy_model()(y, indexes, loc=mu, training=training)
        if training and self.quantization == "mixed":
            y_tilde = tfc.round_st(y, mu)
        return {"x_hat": self.synthesis(y_tilde), "bits": {"y": bits_y, "z": bits_z}}

    def decoder_macs(self, height: int, width: int) -> dict:
        s = self.total_stride
        z_shape = (-(-height // s), -(-width // s), self.hyper_channels)
        hyper, y_shape = self.hyper_synthesis.macs(z_shape)
        y_shape = (y_shape[0], y_shape[1], self.latent_channels)
        return {"synthesis": self.synthesis.macs(y_shape)[0], "hyper_synthesis": hyper}
