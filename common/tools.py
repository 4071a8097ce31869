"""Command-line tools of the codecs (x265, ffmpeg, cjxl, avifenc, ...): found by name,
run as subprocesses, a missing one named with the Debian package that provides it."""

import shutil
import subprocess

from common.errors import CodecError

# Debian packages that provide each command-line tool.
TOOL_PACKAGES = {
    "avifenc": "libavif-bin",
    "avifdec": "libavif-bin",
    "cjxl": "libjxl-tools",
    "djxl": "libjxl-tools",
    "x265": "x265",
    "ffmpeg": "ffmpeg",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        raise CodecError(
            f"{name} not found: install the Debian package {package} (apt-get install {package})."
        )
    return path


def run_tool(args: list[str], what: str) -> bytes:
    out = subprocess.run(args, capture_output=True, timeout=600)
    if out.returncode != 0:
        message = out.stderr.decode(errors="replace").strip().splitlines()
        raise CodecError(f"{what} failed: {message[-1] if message else out.returncode}")
    return out.stdout


def tool_version(args: list[str], pattern: str) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    for line in (out.stdout + out.stderr).splitlines():
        if pattern in line:
            return line.strip()
    return "unknown version"
