"""Shared fixtures: small synthetic images made here (no external data) and a tiny fit config."""

import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_script(script: str, *args, env: dict | None = None, timeout: float = 600):
    """Runs one of the project's scripts as a user would: a subprocess in the repo root."""
    import subprocess

    return subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        env=env or dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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


# Debian packages of the classical codecs' command-line tools (bench.codecs).
CODEC_PACKAGES = ("libjpeg-turbo-progs", "webp", "libopenjp2-tools", "libavif-bin",
                  "libjxl-tools", "ffmpeg", "x265")  # fmt: skip
CODEC_TOOLS = ("cjxl", "djxl", "x265", "ffmpeg")


@pytest.fixture(scope="session")
def codec_tools():
    """Makes sure the codec tools exist: installs them when the tests run as root (CI)."""
    import shutil
    import subprocess

    missing = [t for t in CODEC_TOOLS if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.skip(f"codec tools {missing} missing and not root: apt-get install them.")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    out = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *CODEC_PACKAGES],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    still = [t for t in CODEC_TOOLS if shutil.which(t) is None]
    if still:
        pytest.fail(f"apt-get could not install {still}: {out.stderr[-1000:]}")
