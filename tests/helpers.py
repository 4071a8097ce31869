"""Helpers shared by the tests: images made here (no external data), tiny configs, the
golden file, and running a script as a user would. Fixtures live in conftest.py."""

import contextlib
import importlib
import io
import os
import runpy
import signal
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The same C3 file in format version 3 (the current one), 2 and 1 (tests/data/README.md).
GOLDEN = os.path.join(ROOT, "tests", "data", "golden_v3.c3")
GOLDEN_V2 = os.path.join(ROOT, "tests", "data", "golden_v2.c3")
GOLDEN_V1 = os.path.join(ROOT, "tests", "data", "golden.c3")
# sha256 of the PNG that the golden files decode to.
GOLDEN_PNG_SHA256 = "88d494d949fdf69045f41794fe08707e4ff0dccf1cbaa9f1eafd0955c6beb076"


# What `import tensorflow` adds to os.environ (TF 2.14).
TF_IMPORT_VARIABLES = ("TF2_BEHAVIOR", "TPU_ML_PLATFORM")


def run_script(script: str, *args, env: dict | None = None, timeout: float = 600):
    """Runs one of the project's scripts as a user would: a subprocess in the repo root,
    with the environment of a user's shell: without the variables that importing
    TensorFlow in this process set (TF2_BEHAVIOR changes how a child starts TF)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in TF_IMPORT_VARIABLES}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_process(script: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs a script's `__main__` in this process, as `run_script` would in a new one, and
    returns the same (returncode, stdout, stderr): for tests of what a script does with
    its flags and errors, where a fresh interpreter (and TensorFlow's start-up, ~4 s a
    call) is not the point. Each script keeps one end-to-end test through `run_script`.

    absl's flags are process-wide: the flags the script defines are removed afterwards,
    and the parsed state reset, so that the next script can define its own. `env`
    replaces os.environ for the call (e.g. a PATH without sbatch).
    """
    from absl import app, flags  # noqa: F401  (their own flags stay defined)
    from absl import logging as absl_logging

    # INFO, as absl logs in a script's own process (the flags reset below would drop it).
    argv = [script, "--verbosity=0", *args]
    defined_before = set(flags.FLAGS)
    saved = sys.argv, os.getcwd(), signal.getsignal(signal.SIGTERM), dict(os.environ)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        sys.argv = argv
        os.chdir(ROOT)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            absl_logging.get_absl_handler().python_handler.stream = stderr
            try:
                runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
    finally:
        sys.argv, cwd, sigterm, environ = saved
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        signal.signal(signal.SIGTERM, sigterm)
        absl_logging.get_absl_handler().python_handler.stream = sys.stderr
        for name in set(flags.FLAGS) - defined_before:
            delattr(flags.FLAGS, name)
        flags.FLAGS.unparse_flags()
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


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


def tiny_fit_config(num_noise_steps: int = 60, max_ste_steps: int = 10, jit: bool = False):
    from configs import c3_base

    fit = c3_base.get_base_config().fit
    fit.num_noise_steps = num_noise_steps
    fit.max_ste_steps = max_ste_steps
    fit.log_every = 20
    fit.jit_compile = jit
    return fit


# Network quantisation steps of the random C3 models below.
STEPS = (2.0**-8, 2.0**-10)


def random_model(config=None, height=24, width=40, seed=0):
    """A C3 model with random networks, quantised to STEPS (no fitting)."""
    from configs import c3_kodak
    from models import registry

    config = config or c3_kodak.get_config().model
    model = registry.build_model(config, height=height, width=width)
    rng = np.random.default_rng(seed)
    for v in model.network_variables:
        v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))
    model.set_network_integers(model.network_integers(*STEPS), *STEPS)
    return model


# Small widths so that each amortised model trains in seconds; the structure is the real one.
TINY_AMORTISED = {
    "model.analysis_channels": (12, 12, 12),
    "model.synthesis_channels": (12, 12, 12),
    "model.latent_channels": 16,
    "model.hyper_channels": 12,
    "model.hyper_synthesis_channels": (12, 16),
    "model.elic_residual_blocks": 1,
}


def tiny_amortised_config(name: str, data_root: str, steps: int = 30):
    """configs/<name>.py with tiny widths, trained on `data_root` for `steps` steps."""
    config = importlib.import_module(f"configs.{name}").get_config()
    for key, value in TINY_AMORTISED.items():
        section, field = key.split(".")
        if key == "model.hyper_channels" and config.model.hyper_channels == 0:
            continue  # bls2017 has no hyperprior
        if key == "model.synthesis_channels" and config.model.synthesis != "gdn":
            value = tuple(config.model.synthesis_channels)
        config[section][field] = value
    config.data.name, config.data.root = "folder", data_root
    config.data.patch_size, config.data.shuffle_buffer = 64, 8
    config.val.name, config.val.root, config.val.max_images = "folder", data_root, 2
    config.model.lmbda = 0.02  # above the lambda warm-up threshold: the loss is comparable
    t = config.train
    t.num_steps, t.batch_size, t.learning_rate = steps, 2, 1e-3
    t.log_every, t.checkpoint_every, t.validate_every = 10, 15, steps
    return config


# Debian packages of the classical codecs' command-line tools (bench.codecs).
CODEC_PACKAGES = ("libjpeg-turbo-progs", "webp", "libopenjp2-tools", "libavif-bin",
                  "libjxl-tools", "ffmpeg", "x265")  # fmt: skip
CODEC_TOOLS = ("cjxl", "djxl", "x265", "ffmpeg")


def version_1_bytes(container) -> bytes:
    """A container written in format version 1 (no section checksums), as older
    releases wrote it: for tests of the version 1 reader."""
    import binascii
    import struct

    from coding.container import CODEC_IDS, encode_varint

    head = bytearray(b"LZ") + bytes([1, CODEC_IDS[container.codec]])
    head += encode_varint(len(container.header)) + container.header
    head += bytes([len(container.sections)])
    for section in container.sections:
        head += encode_varint(len(section))
    head += struct.pack(">H", binascii.crc_hqx(bytes(head), 0))
    return bytes(head) + b"".join(container.sections)


def apt_install(packages: list[str]) -> subprocess.CompletedProcess:
    """apt-get update + install (root only), one process at a time: the test workers
    (pytest-xdist) would otherwise race for dpkg's lock."""
    import fcntl

    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open("/tmp/learned-zoo-tests-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        return subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )


def assert_latents_round_trip(arch, parameters, symbols) -> None:
    """The wavefront coder decodes what it encoded, with and without XLA."""
    from coding.c3.wavefront import LatentCoder

    coder = LatentCoder(arch)
    string = coder.encode(symbols, parameters)
    for jit in (True, False):
        grids, ok = coder.decode(string, parameters, jit)
        assert ok
        for grid, expected in zip(grids, symbols, strict=True):
            np.testing.assert_array_equal(grid.numpy(), expected)


def assert_rows_follow(loc, scale, q_step: float, rows, rounded) -> None:
    """The fixed-point context model's table rows and round(mu) `rows`, `rounded` agree
    with the float model's (loc, scale) (value units): mu within one offset bucket, the
    scale index within one row."""
    from coding import laplace_tables as lt

    mu = np.asarray(loc) / q_step
    scale_index = np.clip(
        np.round((np.log(np.asarray(scale) / q_step) - lt.LN_SCALE_MIN) * lt.SCALES_PER_LN),
        0,
        lt.NUM_SCALES - 1,
    )
    got_scale, got_bucket = np.divmod(np.asarray(rows), lt.NUM_OFFSETS)
    got_mu = np.asarray(rounded) + got_bucket / lt.OFFSET_BUCKETS - 0.5
    assert np.abs(got_mu - mu).max() < 1 / lt.OFFSET_BUCKETS
    assert np.abs(got_scale - scale_index).max() <= 1


DECODE_IN_SUBPROCESS = """
import sys
import tensorflow as tf
inter, intra, jit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
tf.config.threading.set_inter_op_parallelism_threads(inter)
tf.config.threading.set_intra_op_parallelism_threads(intra)
from coding.c3 import codec as c3_codec
from common.images import encode_png
data = open(sys.argv[4], "rb").read()
sys.stdout.buffer.write(encode_png(c3_codec.decode(data, jit=jit).image))
"""


def decode_in_other_processes(path) -> list[bytes]:
    """The PNG bytes a C3 file decodes to in two other processes: one thread without
    XLA, two threads with XLA (the asserts that they decoded are the caller's)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    outputs = []
    for inter, intra, jit in [(1, 1, "0"), (2, 2, "1")]:
        out = subprocess.run(
            [sys.executable, "-c", DECODE_IN_SUBPROCESS, str(inter), str(intra), jit, str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        outputs.append(out.stdout)
    return outputs
