"""RC (lossy layer + residual coder): exact files everywhere, or clear errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from coding import fixed_point as fp
from coding.container import Container, parse
from coding.rc import codec as rc_codec
from common.errors import BitstreamError, CodecError
from configs import rc_c3, rc_hevc
from models import registry
from models.c3 import lossless as model_lossless
from models.rc import residual
from pipelines.rc_training import make_lossy_layer
from tests.helpers import ROOT, run_in_process, smooth_image, tiny_fit_config

ONE = 2.0**fp.ACTIVATION_BITS
GOLDEN_WEIGHTS = os.path.join(ROOT, "tests", "data", "rc_tiny_weights.npz")
GOLDEN_FILE = os.path.join(ROOT, "tests", "data", "golden_rc_hevc.lz")


def tiny_config(name: str = "rc_hevc", mixtures: int = 0):
    """The golden network's config: a Laplace network (the first RC models) unless
    `mixtures` (tests/test_rc_mixture.py)."""
    config = (rc_hevc if name == "rc_hevc" else rc_c3).get_config()
    config.model.channels, config.model.blocks = 4, 1
    config.model.mixtures = mixtures
    config.lossy.qualities = (22, 34)
    return config


def golden_model():
    """A tiny residual network with the weights stored in tests/data (non-zero tail)."""
    model = registry.build_model(tiny_config().model)
    stored = np.load(GOLDEN_WEIGHTS)
    for i, variable in enumerate(model.weights):
        variable.assign(stored[f"w{i}"])
    return model


def noisy_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = smooth_image(h, w, seed=seed).astype(np.int64)
    return np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def coded(codec_tools):
    """An odd-sized image coded with the golden network at two HEVC QPs."""
    image = noisy_image(37, 53, seed=3)
    codec = rc_codec.RcCodec(golden_model(), tiny_config())
    return image, codec, codec.compress(image)


def test_the_fixed_point_network_is_the_float_one_to_rounding():
    model = golden_model()
    x_l = noisy_image(21, 30, seed=1)
    fixed = rc_codec.FixedPointResidual(model)(x_l).numpy()
    assert np.all(fixed == np.round(fixed))  # integers at the activation scale
    floating = model(tf.constant(x_l[None], tf.float32))[0].numpy()
    assert fixed.shape == floating.shape == (21, 30, residual.NUM_OUTPUTS)
    assert np.abs(fixed / ONE - floating).max() < 2e-3
    assert np.abs(floating).max() > 0.05  # the test network's outputs are not all zero


def test_the_file_decodes_to_the_original_and_keeps_the_smallest_quality(coded):
    image, codec, encoded = coded
    np.testing.assert_array_equal(codec.decode(encoded.data), image)
    assert [t["quality"] for t in encoded.tries] == [22.0, 34.0]
    assert len(encoded.data) == min(t["bytes"] for t in encoded.tries)
    sections = parse(encoded.data).sections
    assert len(sections) == 4 and len(sections[0]) == encoded.bytes_lossy
    assert sum(map(len, sections[1:])) == encoded.bytes_residual
    assert encoded.lossy_psnr > 25


DECODE_SCRIPT = """
import sys
import tensorflow as tf
inter, intra, jit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
tf.config.threading.set_inter_op_parallelism_threads(inter)
tf.config.threading.set_intra_op_parallelism_threads(intra)
from coding.rc.codec import RcCodec
from tests.test_rc import tiny_config
from {module} import golden_model
codec = RcCodec(golden_model(), tiny_config(mixtures={mixtures}), jit=jit)
sys.stdout.buffer.write(codec.decode(open(sys.argv[4], "rb").read()).tobytes())
"""


def assert_decodes_elsewhere(data: bytes, image: np.ndarray, tmp_path, module: str,
                             mixtures: int) -> None:  # fmt: skip
    """The file decodes to `image` in other processes, with one and two threads, with
    and without XLA, by the golden network of `module` (a test module)."""
    path = tmp_path / "x.lz"
    path.write_bytes(data)
    script = DECODE_SCRIPT.format(module=module, mixtures=mixtures)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    for inter, intra, jit in [(1, 1, "0"), (2, 2, "1")]:
        out = subprocess.run(
            [sys.executable, "-c", script, str(inter), str(intra), jit, str(path)],
            cwd=ROOT, env=env, capture_output=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        assert out.stdout == image.tobytes()


def test_the_file_decodes_exactly_in_other_processes_threads_and_xla(coded, tmp_path):
    image, _, encoded = coded
    assert_decodes_elsewhere(encoded.data, image, tmp_path, "tests.test_rc", 0)


def test_a_damaged_residual_section_is_an_error(coded):
    image, codec, encoded = coded
    data = bytearray(encoded.data)
    data[-2] ^= 0x10  # inside the B string: its CRC-16 fails
    with pytest.raises(BitstreamError, match="checksum"):
        codec.decode(bytes(data))
    # The G string swapped for the R string (valid CRC-16s): decoded, but the pixels are
    # wrong, and the decoder refuses them (range decoder error, value range or CRC-32).
    parsed = parse(encoded.data)
    r, g, b = parsed.sections[1:]
    swapped = Container(parsed.codec, parsed.header, (parsed.sections[0], r, r, b)).to_bytes()
    with pytest.raises(BitstreamError):
        codec.decode(swapped)


def test_a_file_of_another_network_or_codec_is_refused(coded):
    _, codec, encoded = coded
    other = golden_model()
    other.tail.bias.assign(other.tail.bias + 0.5)
    with pytest.raises(BitstreamError, match="another residual network"):
        rc_codec.RcCodec(other, tiny_config()).decode(encoded.data)
    parsed = parse(encoded.data)
    as_c3 = Container("rc_c3", parsed.header, parsed.sections).to_bytes()
    with pytest.raises(BitstreamError, match="not rc_hevc"):
        codec.decode(as_c3)


def test_the_residual_means_are_relative_to_x_l_and_clipped_to_the_support():
    x_l = np.array([[[0, 128, 255]]], np.uint8)
    outputs = tf.constant([[[-3.0 * ONE, 2.0 * ONE, 5.0 * ONE] + [0.0] * 6]], tf.float64)
    _, means = rc_codec.coding_inputs(outputs, x_l, (0, 0, 0))
    np.testing.assert_array_equal(means.numpy() / ONE, [[[0.0, 130.0, 255.0]]])
    # The float model: the same means, and the channel coupling of lossless C3 (G's mean
    # moves with R's prediction error, B's with R's and G's).
    x = tf.constant([[[10.0, 130.0, 250.0]]])
    raw = tf.constant([[[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 32.0, 0.0, 64.0]]])
    mu, _ = model_lossless.distribution(residual.absolute_outputs(raw, tf.cast(x_l, tf.float32)), x)
    # a_GR = 32 / 64 = 0.5: mu_G = 128 + 0.5 * (10 - 0); a_BG = 1: mu_B = 255 + (130 - 128).
    np.testing.assert_allclose(mu.numpy(), [[[0.0, 133.0, 255.0]]], atol=1e-4)


def test_tau_lowers_the_estimated_bits():
    """The scale refinement picks, per channel, the ln-scale offset with the fewest bits:
    scales predicted 4x too small are corrected upward."""
    rng = np.random.default_rng(0)
    x_l = np.full((24, 24, 3), 128, np.uint8)
    image = np.clip(128 + rng.laplace(0, 4.0, x_l.shape).round(), 0, 255).astype(np.uint8)
    ln_b = np.log(1.0) - model_lossless.LN_SCALE_SHIFT  # b = 1, the truth is b = 4
    outputs = np.zeros((24, 24, 9))
    outputs[..., 3:6] = ln_b
    tau = rc_codec.search_tau(tf.constant(outputs * ONE), x_l, image)
    assert all(t == rc_codec.TAU_RANGE or abs(t * rc_codec.TAU_UNIT - np.log(4)) < 0.2 for t in tau)

    def bits(offsets):
        shifted = outputs.copy()
        shifted[..., 3:6] += np.asarray(offsets) * rc_codec.TAU_UNIT
        o = residual.absolute_outputs(tf.constant(shifted, tf.float32), tf.cast(x_l, tf.float32))
        return float(tf.reduce_sum(model_lossless.pixel_bits(o, tf.constant(image, tf.float32))))

    assert bits(tau) < 0.9 * bits((0, 0, 0))


def test_the_golden_rc_file_decodes_to_its_image(codec_tools):
    """The format pinned: a file of the first RC encoder (tiny network of
    tests/data/rc_tiny_weights.npz, HEVC QP 22) decodes to exactly its image."""
    with open(GOLDEN_FILE, "rb") as f:
        data = f.read()
    codec = rc_codec.RcCodec(golden_model(), tiny_config())
    np.testing.assert_array_equal(codec.decode(data), noisy_image(24, 32, seed=9))


def test_training_lowers_the_loss_resumes_and_the_run_codes(codec_tools, tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):  # QP 40: x_l far off, the scales must grow from e
        Image.fromarray(smooth_image(80, 96, seed=20 + i)).save(data / f"{i}.png")
    workdir = tmp_path / "run"
    common = [
        "--config", os.path.join(ROOT, "configs", "rc_hevc.py"), "--workdir", str(workdir),
        f"--config.data.root={data}", "--config.data.patch_size=48",
        "--config.train.batch_size=4", "--config.train.log_every=10",
        "--config.train.learning_rate=2e-2", "--config.model.channels=8",
        "--config.model.blocks=1", "--config.lossy.train_qualities=(40,)",
        "--config.lossy.qualities=(40,)", "--config.train.checkpoint_every=20",
    ]  # fmt: skip
    out = run_in_process("train.py", *common, "--config.train.num_steps=40")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((workdir / "train_summary.json").read_text())
    losses = [loss for _, loss in summary["loss_history"]]
    assert losses[-1] < losses[0], losses
    assert len(os.listdir(workdir / "lossy" / "qp40")) == 2
    # On the whole training pairs, the trained network against the untrained one.
    from common.rundir import read_run_config
    from pipelines import rc_training, trained_run

    config = read_run_config(str(workdir))
    trained, _ = trained_run.restore_model(str(workdir), config.model)
    untrained = trained_run.build_model(config.model)
    lossy = workdir / "lossy" / "qp40"
    pairs = [
        rc_training.split(tf.constant(rc_training.read_pair(data / n, lossy / n)[None]))
        for n in ("0.png", "1.png")
    ]
    before = np.mean([float(untrained.bits_per_subpixel(x, x_l)) for x, x_l in pairs])
    after = np.mean([float(trained.bits_per_subpixel(x, x_l)) for x, x_l in pairs])
    assert after < 0.95 * before, (before, after)
    # Resume: more steps continue from the checkpoint of step 40.
    out = run_in_process("train.py", *common, "--config.train.num_steps=50")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 40" in out.stderr and "Resumed" in out.stderr
    # The run codes an image losslessly through codec.py, and a bad file leaves nothing.
    source, target = tmp_path / "x.png", tmp_path / "x.lz"
    Image.fromarray(noisy_image(40, 44, seed=5)).save(source)
    out = run_in_process("codec.py", "encode", "-i", str(source), "-o", str(target),
                         "--workdir", str(workdir))  # fmt: skip
    assert out.returncode == 0 and "lossless" in out.stdout, out.stderr[-3000:]
    decoded = tmp_path / "y.png"
    out = run_in_process("codec.py", "decode", "-i", str(target), "-o", str(decoded),
                         "--workdir", str(workdir))  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_array_equal(np.asarray(Image.open(decoded)), noisy_image(40, 44, seed=5))
    damaged = bytearray(target.read_bytes())
    damaged[-1] ^= 1
    target.write_bytes(bytes(damaged))
    bad = tmp_path / "bad.png"
    out = run_in_process("codec.py", "decode", "-i", str(target), "-o", str(bad),
                         "--workdir", str(workdir))  # fmt: skip
    assert out.returncode != 0 and "checksum" in out.stderr and not bad.exists()


def test_rc_c3_codes_with_a_c3_lossy_layer():
    """The C3 layer: a lossy C3 file (a short fit) whose fixed-point decode is x_l."""
    config = tiny_config("rc_c3")
    config.lossy.qualities = (0.02,)
    c3 = config.lossy.c3
    c3.fit.update(tiny_fit_config(40, 5).to_dict())
    image = noisy_image(32, 48, seed=4)
    layer = make_lossy_layer(config)
    codec = rc_codec.RcCodec(golden_model(), config, layer=layer)
    encoded = codec.compress(image)
    assert parse(parse(encoded.data).sections[0]).codec == "c3"
    with pytest.raises(CodecError, match="decodes only"):  # no C3 encoder handed in
        rc_codec.RcCodec(golden_model(), config).compress(image)
    np.testing.assert_array_equal(codec.decode(encoded.data), image)


def test_rc_c3_lossy_layer_fits_every_lambda_as_a_fresh_codec_would():
    """One C3 codec serves every image and lambda of the layer (its graphs traced once):
    a fit at a second lambda writes the file a fresh codec writes at that lambda."""
    config = tiny_config("rc_c3")
    config.lossy.c3.fit.update(tiny_fit_config(40, 5).to_dict())
    image = noisy_image(32, 48, seed=4)
    layer = make_lossy_layer(config)
    first, second = layer.encode(image, 0.02), layer.encode(image, 0.002)
    assert first != second
    assert second == make_lossy_layer(config).encode(image, 0.002)
