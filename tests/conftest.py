"""Shared fixtures: small synthetic images made here (no external data) and a tiny fit config."""

import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def smooth_image(height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image with smooth structure plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [np.sin(xx / 5.0) * 0.4 + 0.5, np.cos(yy / 7.0) * 0.4 + 0.5, (xx + yy) / (height + width)],
        axis=-1,
    )
    image += rng.normal(0, 0.02, image.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


@pytest.fixture
def image_32x48() -> np.ndarray:
    return smooth_image()


def tiny_fit_config(num_noise_steps: int = 60, max_ste_steps: int = 10, jit: bool = False):
    from configs import c3_base

    fit = c3_base.get_base_config().fit
    fit.num_noise_steps = num_noise_steps
    fit.max_ste_steps = max_ste_steps
    fit.log_every = 20
    fit.jit_compile = jit
    return fit
