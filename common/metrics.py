"""Distortion metrics on 8-bit RGB images: MSE, PSNR and MS-SSIM."""

import math

import numpy as np

# tf.image.ssim_multiscale with its 5 scales and 11-tap filter needs each side to be
# larger than (11 - 1) * 2^4 = 160 pixels.
MS_SSIM_MIN_SIZE = 161


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error on the 0..255 scale."""
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def psnr_from_mse(error: float, peak: float = 255.0) -> float:
    """PSNR in dB for a mean squared error measured on a scale whose peak is `peak`."""
    return float("inf") if error <= 0 else 10.0 * math.log10(peak**2 / error)


def psnr_from_mse_tensor(error, peak: float = 255.0):
    """`psnr_from_mse` on a TensorFlow tensor, inside a compiled step (finite at 0 error)."""
    import tensorflow as tf

    return 10.0 * tf.math.log(peak**2 / tf.maximum(error, 1e-10)) / tf.math.log(10.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255)."""
    return psnr_from_mse(mse(a, b))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (Wang et al. 2003) of two uint8 RGB images; None if too small for 5 scales."""
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIZE:
        return None
    import tensorflow as tf  # only here: the other metrics need no TensorFlow

    value = tf.image.ssim_multiscale(
        tf.constant(a, tf.float32)[None], tf.constant(b, tf.float32)[None], max_val=255.0
    )
    return float(value[0])
