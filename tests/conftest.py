"""Shared fixtures; the helpers they use (images made here, tiny configs) are in helpers.py."""

import os

import pytest

from tests.helpers import CODEC_PACKAGES, CODEC_TOOLS, apt_install

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def codec_tools():
    """Makes sure the codec tools exist: installs them when the tests run as root (CI)."""
    import shutil

    missing = [t for t in CODEC_TOOLS if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.skip(f"codec tools {missing} missing and not root: apt-get install them.")
    out = apt_install(CODEC_PACKAGES)
    still = [t for t in CODEC_TOOLS if shutil.which(t) is None]
    if still:
        pytest.fail(f"apt-get could not install {still}: {out.stderr[-1000:]}")
