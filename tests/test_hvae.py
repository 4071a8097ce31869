"""Hierarchical VAEs (QRes-VAE, QARV): the top-down path, the fixed-point decoder, real
files (progressive, variable rate), training and the command line."""

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from coding import container
from coding.vae import fixed
from coding.vae.codec import HvaeCodec
from common.errors import BitstreamError, CodecError, ConfigError
from common.images import write_png
from models import registry
from models.vae import hvae
from tests.helpers import ROOT, run_in_process, smooth_image

TINY = {
    "encoder_widths": (16, 16, 16),
    "encoder_blocks": (1, 1, 1),
    "encoder_kernels": (3, 3, 1),
    "decoder_widths": (16, 16, 16),
    "decoder_kernels": (1, 3, 3),
    "decoder_blocks": (0, 0, 0),
}
LATENTS = {"qres_vae": ((4,), (4, 4), (2,)), "qarv": ((4,), (4, 4), ())}


def tiny_config(name: str):
    """configs/<name>_small.py at tiny widths, 3 stages (total stride 16)."""
    config = importlib.import_module(f"configs.{name}_small").get_config()
    for key, value in TINY.items():
        config.model[key] = value
    config.model.latent_channels = LATENTS[name]
    if name == "qarv":
        config.model.decoder_blocks = (0, 0, 1)
    return config


GOLDEN_WEIGHTS = os.path.join(ROOT, "tests", "data", "hvae_tiny_qarv.npz")
GOLDEN_FILE = os.path.join(ROOT, "tests", "data", "golden_qarv.lz")
GOLDEN_PNG_SHA256 = "943deb20e973ebe697755b6bc02f39eb4a8d750ea1865232b022c21655c0bb44"


def trained_tiny_qarv(path: str, **model):
    """A tiny QARV (3 stages of width 16, lambda embedding 32) with the trained weights
    of `path` (`model.get_weights()` order); `model` overrides config.model fields."""
    config = tiny_config("qarv")
    config.model.embed_dim = 32
    config.model.update(model)
    qarv = registry.build_model(config.model)
    with np.load(path) as weights:
        qarv.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    return qarv


def golden_model():
    """The tiny QARV of tests/data/hvae_tiny_qarv.npz (trained on photo crops)."""
    return trained_tiny_qarv(GOLDEN_WEIGHTS)


RATES_WEIGHTS = os.path.join(ROOT, "tests", "data", "hvae_tiny_qarv_rates.npz")
RATES_RANGE = (0.25, 16.0)


def rates_model():
    """The tiny QARV of tests/data/hvae_tiny_qarv_rates.npz: golden_model's layout trained
    over lambda in RATES_RANGE with `model.loss_balance = "log"` (tests/data/README.md)."""
    return trained_tiny_qarv(RATES_WEIGHTS, lmbda_range=RATES_RANGE)


def perturbed_model(name: str, seed: int = 0):
    """A tiny model whose zero-initialised parts (prior heads, layer scales) are moved,
    so that every block matters. Seeded: the same weights in every run."""
    tf.keras.utils.set_random_seed(seed)
    model = registry.build_model(tiny_config(name).model)
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v + 0.05 * rng.standard_normal(v.shape).astype(np.float32))
    return model


def textured_image(height=40, width=56, seed=0):
    rng = np.random.default_rng(seed)
    base = smooth_image(height, width, seed).astype(np.float64)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=["qres_vae", "qarv"])
def coded(request):
    model = perturbed_model(request.param)
    codec = HvaeCodec(model, hvae.latent_entropy_model(compression=True))
    image = textured_image()
    lmbda = 256.0 if model.variable_rate else None
    return codec, image, codec.compress(image, lmbda)


def test_each_prior_sees_only_the_earlier_latent_layers():
    model = perturbed_model("qres_vae")
    rng = np.random.default_rng(1)
    num = len(model.latents)
    base = []

    def run(zs):
        priors = []

        def choose(k, feature, mu, sigma):
            priors.append((mu.numpy(), sigma.numpy()))
            if len(base) < num:
                base.append(tf.constant(rng.normal(0, 2, mu.shape).astype(np.float32)))
            return zs[k] if zs is not None else base[k]

        model.top_down(1, 32, 32, None, choose)
        return priors

    reference = run(None)
    for changed in range(num):
        zs = list(base)
        zs[changed] = zs[changed] + 1.0
        priors = run(zs)
        for k in range(num):
            same = all(np.array_equal(a, b) for a, b in zip(priors[k], reference[k], strict=True))
            assert same == (k <= changed), (changed, k)


def test_shapes_strides_and_counts():
    model = perturbed_model("qarv")
    x = tf.random.uniform([2, 32, 48, 3])
    out = model(x, lmbda=64.0)
    assert out["x_hat"].shape == x.shape
    assert set(out["bits"]) == {"z0", "z1", "z2"}
    assert all(v.shape == (2,) for v in out["bits"].values())
    assert model.total_stride == 16
    macs = model.decoder_macs(32, 48)
    assert macs["prior_path"] > 0 and macs["synthesis"] > 0  # QARV: blocks after the latents


def test_the_rate_is_a_probability_of_the_bin():
    z = tf.constant([0.0, 0.3, 2.0, 40.0])
    bits = hvae.gaussian_bits(z, tf.zeros(4), tf.ones(4)).numpy()
    from math import erf, log2, sqrt

    def cdf(v):
        return 0.5 * (1 + erf(v / sqrt(2)))

    expected = [-log2(cdf(v + 0.5) - cdf(v - 0.5)) for v in (0.0, 0.3, 2.0)]
    np.testing.assert_allclose(bits[:3], expected, rtol=1e-4)
    assert np.isfinite(bits[3]) and bits[3] > 500  # far tail: the density, not log(0)


def test_the_fixed_point_layer_norm_is_the_float_one_to_rounding():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (4, 5, 6, 32))
    ints = np.round(x * 4096)
    got = fixed.layer_norm(tf.constant(ints)).numpy() / 4096
    norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, center=False, scale=False)
    want = norm(tf.constant(ints / 4096, tf.float32)).numpy()
    assert np.abs(got - want).max() < 2e-3


def test_the_scale_index_is_the_smallest_table_scale_at_or_above_sigma():
    model = perturbed_model("qres_vae")
    decoder = fixed.FixedPointDecoder(model)
    raw = np.arange(-30000, 30000, 7, dtype=np.float64)
    index = decoder.scale_indexes(tf.constant(raw)).numpy()
    sigma = np.exp(np.log1p(np.exp(raw / 4096 + 2.3)) - 2.3)
    table = np.exp(hvae.LOG_SCALE_MIN + np.arange(64) * hvae.SCALE_STEP)
    want = np.minimum(np.searchsorted(table, sigma, side="left"), 63)
    assert (index == want).mean() > 0.999  # float64 here may differ exactly at a boundary
    assert np.all(np.diff(index) >= 0) and index.min() == 0 and index.max() == 63


def test_the_fixed_point_decoder_is_the_float_model_to_rounding():
    for name in ("qres_vae", "qarv"):
        model = perturbed_model(name)
        decoder = fixed.FixedPointDecoder(model)
        output, _ = decoder.top_down(32, 32, decoder.embed(100.0), lambda k, f, mu, i: mu)
        got = decoder.to_uint8(output, 32, 32).astype(int)
        want = np.round(model.decode_prefix([], 100.0, 1, 32, 32)[0].numpy() * 255)
        assert np.abs(got - want).max() <= 2, name


def test_the_file_decodes_to_the_reconstruction_and_matches_the_estimate(coded):
    codec, image, encoded = coded
    decoded = codec.decompress(encoded.data)
    np.testing.assert_array_equal(decoded.image, encoded.reconstruction)
    assert decoded.image.shape == image.shape
    assert len(encoded.section_bytes) == codec.num_layers
    payload = 8 * sum(encoded.section_bytes)
    estimate = sum(encoded.bits_estimated)
    # The range coder's flush costs up to 4 bytes a string.
    assert abs(payload - estimate) <= 0.02 * estimate + 32 * codec.num_layers
    # The float model's quantised forward pass codes about as many bits.
    model = codec.model
    out = model(model.pad(tf.constant(image / 255.0, tf.float32)[None]), lmbda=encoded.lmbda)
    float_bits = sum(float(tf.reduce_sum(v)) for v in out["bits"].values())
    assert abs(float_bits - estimate) < 0.1 * estimate


def test_a_prefix_decodes_to_the_prior_mean_prediction(coded):
    codec, image, encoded = coded
    model, decoder = codec.model, codec.decoder
    full = codec.decompress(encoded.data)
    zs = []

    def record(k, feature, mu, indexes):  # the decoded z of every layer
        return zs[k] if k < len(zs) else mu

    sizes = []
    for layers in range(codec.num_layers + 1):
        decoded = codec.decompress(encoded.data, layers=layers)
        sizes.append(decoded.prefix_bytes)
        assert decoded.layers == layers
        if layers == codec.num_layers:
            np.testing.assert_array_equal(decoded.image, full.image)
    assert sizes == sorted(sizes) and sizes[-1] == len(encoded.data)
    # Layer 0 alone: its z from the file, everything after at the prior mean, computed
    # here with the decoder's own pieces.
    symbols = []

    def choose(k, feature, mu, indexes):
        mu_q = model.latents[k].posterior(
            tf.cast(feature / 4096, tf.float32), features[codec.strides[k]], embedding
        )
        symbols.append(tf.round(tf.cast(mu_q, tf.float64) - mu / 4096))
        return symbols[-1] * 4096 + mu

    x = model.pad(tf.constant(image / 255.0, tf.float32)[None])
    embedding = model.embed(encoded.lmbda, 1)
    features = model.encode_features(x, embedding)
    lmbda_embedding = decoder.embed(encoded.lmbda)
    decoder.top_down(x.shape[1], x.shape[2], lmbda_embedding, choose)
    first = []

    def prefix(k, feature, mu, indexes):
        return symbols[0] * 4096 + mu if k == 0 else mu

    output, _ = decoder.top_down(x.shape[1], x.shape[2], lmbda_embedding, prefix)
    expected = decoder.to_uint8(output, *image.shape[:2])
    np.testing.assert_array_equal(codec.decompress(encoded.data, layers=1).image, expected)
    del first, record


def test_bad_files_and_bad_lambdas_are_clear_errors(coded):
    codec, image, encoded = coded
    parsed = container.parse(encoded.data)
    damaged = bytearray(encoded.data)
    damaged[-3] ^= 0xFF
    with pytest.raises(BitstreamError):
        codec.decompress(bytes(damaged))
    short = container.Container(parsed.codec, parsed.header, parsed.sections[:-1]).to_bytes()
    with pytest.raises(BitstreamError, match="sections"):
        codec.decompress(short)
    with pytest.raises(CodecError, match="layers"):
        codec.decompress(encoded.data, layers=codec.num_layers + 1)
    if codec.model.variable_rate:
        for bad in (1.0, 1e5, float("nan")):
            with pytest.raises(CodecError, match="range"):
                codec.compress(image, bad)
        header = bytearray(parsed.header)
        header[2:6] = container.pack_f32(1e6)  # after two 1-byte varints
        bad = container.Container(parsed.codec, bytes(header), parsed.sections).to_bytes()
        with pytest.raises(BitstreamError, match="lambda"):
            codec.decompress(bad)
    else:
        with pytest.raises(CodecError, match="fixed-rate"):
            codec.compress(image, 64.0)
    other = HvaeCodec(perturbed_model(codec.name, seed=5), codec.entropy_model)
    with pytest.raises(BitstreamError, match="fingerprint"):
        other.decompress(encoded.data)


TINY_CONFIG = """
from configs import qarv_small

def get_config():
    config = qarv_small.get_config()
    config.model.update({model})
    config.model.latent_channels = {latents}
    config.model.decoder_blocks = (0, 0, 1)
    return config
"""


def test_the_golden_qarv_file_decodes_to_its_image():
    """The format pinned: a file of the first QARV encoder (tiny trained model of
    tests/data/hvae_tiny_qarv.npz, lambda 256) decodes to the same pixels."""
    import hashlib

    from common.images import encode_png

    codec = HvaeCodec(golden_model(), hvae.latent_entropy_model(compression=True))
    with open(GOLDEN_FILE, "rb") as f:
        data = f.read()
    decoded = codec.decompress(data)
    assert decoded.lmbda == 256.0 and decoded.image.shape == (40, 56, 3)
    assert hashlib.sha256(encode_png(decoded.image)).hexdigest() == GOLDEN_PNG_SHA256


def test_lambda_travels_in_the_header_and_conditions_the_decoder():
    from common.metrics import psnr

    codec = HvaeCodec(golden_model(), hvae.latent_entropy_model(compression=True))
    image = textured_image(40, 56, seed=3)
    files = {lmbda: codec.compress(image, lmbda) for lmbda in (16.0, 2048.0)}
    for lmbda, encoded in files.items():
        decoded = codec.decompress(encoded.data)
        assert decoded.lmbda == lmbda
        np.testing.assert_array_equal(decoded.image, encoded.reconstruction)
        assert psnr(decoded.image, image) > 18
    assert not np.array_equal(files[16.0].reconstruction, files[2048.0].reconstruction)


def test_one_trained_qarv_codes_more_bits_and_a_better_image_at_a_higher_lambda():
    """Variable rate: one model's files grow with lambda across its whole range, and the
    decoded images get better (the issue's "lambda changes the rate monotonically")."""
    from common.metrics import psnr

    codec = HvaeCodec(rates_model(), hvae.latent_entropy_model(compression=True))
    lmbdas = np.geomspace(*RATES_RANGE, 4)
    for seed in (0, 3):
        image = textured_image(64, 96, seed=seed)
        files = [codec.compress(image, float(lmbda)) for lmbda in lmbdas]
        sizes = [len(f.data) for f in files]
        quality = [psnr(f.reconstruction, image) for f in files]
        assert all(np.diff(sizes) > 0), sizes
        assert sizes[-1] > 1.3 * sizes[0], sizes
        assert quality[-1] > quality[0] + 1, quality


def test_the_log_balance_keeps_the_loss_and_weighs_each_image_by_its_own_loss():
    per_image = tf.constant([0.1, 0.4, 2.0])
    for balance in ("sum", "log"):
        with tf.GradientTape() as tape:
            tape.watch(per_image)
            loss = hvae.balanced_mean(per_image, balance)
        assert float(loss) == pytest.approx(2.5 / 3, rel=1e-6)
        grad = tape.gradient(loss, per_image).numpy()
        expected = [1 / 3] * 3 if balance == "sum" else (2.5 / 3) / per_image.numpy() / 3
        np.testing.assert_allclose(grad, expected, rtol=1e-5)
    with pytest.raises(ConfigError, match="loss_balance"):
        hvae.balanced_mean(per_image, "mean")
    config = tiny_config("qarv")
    config.model.loss_balance = "median"
    with pytest.raises(ConfigError, match="loss_balance"):
        registry.build_model(config.model)


def _train_args(config_path, image_folder, workdir, steps):
    return [
        f"--config={config_path}",
        f"--workdir={workdir}",
        "--config.data.root=" + image_folder,
        "--config.data.patch_size=32",
        "--config.data.shuffle_buffer=4",
        "--config.train.batch_size=4",
        "--config.train.learning_rate=1e-3",
        "--config.train.log_every=10",
        "--config.train.checkpoint_every=20",
        f"--config.train.num_steps={steps}",
    ]


@pytest.fixture(scope="module")
def qarv_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hvae_images")
    for i in range(3):
        write_png(str(folder / f"im{i}.png"), textured_image(48, 64, seed=i))
    workdir = tmp_path_factory.mktemp("qarv_run")
    config_path = folder / "tiny_qarv.py"
    model = {k: v for k, v in TINY.items() if k != "decoder_blocks"}
    config_path.write_text(TINY_CONFIG.format(model=model, latents=LATENTS["qarv"]))
    args = _train_args(config_path, str(folder), workdir, 30)
    validation = ["--config.val.name=folder", f"--config.val.root={folder}",
                  "--config.val.max_images=1", "--config.train.validate_every=30"]  # fmt: skip
    return str(folder), str(workdir), args[:-1] + validation + args[-1:]


def test_qarv_trains_resumes_codes_any_rate_and_decodes_elsewhere(qarv_run, tmp_path):
    folder, workdir, args = qarv_run
    out = run_in_process("train.py", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    with open(os.path.join(workdir, "train_summary.json")) as f:
        summary = json.load(f)
    losses = [loss for _, loss in summary["loss_history"]]
    assert losses[-1] < losses[0]
    assert "moving average" in out.stderr
    # Validation measures the model's lambda and both ends of the range.
    with open(os.path.join(workdir, "validation.json")) as f:
        (record,) = json.load(f)
    assert record["step"] == 30 and sorted(record["by_lambda"], key=float) == ["16", "128", "2048"]
    assert all(p["bpp"] > 0 and p["psnr"] > 5 for p in record["by_lambda"].values())
    assert record["by_lambda"]["128"]["bpp"] == pytest.approx(record["bpp"])
    out = run_in_process("train.py", *args[:-1], "--config.train.num_steps=40")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resumed from" in out.stderr and "step 30" in out.stderr

    source = tmp_path / "in.png"
    write_png(str(source), textured_image(40, 56, seed=9))
    for lmbda in ("16", "2048"):
        target = tmp_path / f"out{lmbda}.lz"
        out = run_in_process(
            "codec.py", "encode", "-i", str(source), "-o", str(target),
            f"--workdir={workdir}", f"--lmbda={lmbda}",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"{target}: {os.path.getsize(target)} bytes" in out.stdout
    out = run_in_process(
        "codec.py", "encode", "-i", str(source), "-o", str(tmp_path / "bad.lz"),
        f"--workdir={workdir}", "--lmbda=5000",
    )  # fmt: skip
    assert out.returncode != 0 and "range" in out.stderr
    assert not os.path.exists(tmp_path / "bad.lz")
    decoded = tmp_path / "dec.png"
    out = run_in_process(
        "codec.py", "decode", "-i", str(target), "-o", str(decoded),
        f"--workdir={workdir}", "--layers=1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 of 3 latent layers" in out.stdout
    out = run_in_process(
        "codec.py", "decode", "-i", str(target), "-o", str(tmp_path / "x.png"),
        f"--workdir={workdir}", "--lmbda=64",
    )  # fmt: skip
    assert out.returncode != 0 and "--lmbda is for encode" in out.stderr
    # The same file decoded here and in another process with one thread.
    from common.images import encode_png
    from pipelines.trained_run import load_trained_run

    with open(target, "rb") as f:
        pngs = [encode_png(load_trained_run(workdir).codec.decompress(f.read()).image)]
    for threads in ("1",):
        script = (
            "import sys, tensorflow as tf\n"
            f"tf.config.threading.set_intra_op_parallelism_threads({threads})\n"
            f"tf.config.threading.set_inter_op_parallelism_threads({threads})\n"
            "from pipelines.trained_run import load_trained_run\n"
            "from common.images import encode_png\n"
            "codec = load_trained_run(sys.argv[1]).codec\n"
            "data = open(sys.argv[2], 'rb').read()\n"
            "sys.stdout.buffer.write(encode_png(codec.decompress(data).image))\n"
        )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
        done = subprocess.run(
            [sys.executable, "-c", script, workdir, str(target)],
            cwd=ROOT, env=env, capture_output=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        pngs.append(done.stdout)
    assert pngs[0] == pngs[1] and len(pngs[0]) > 100
    # eval.py: one curve from one model, with the progressive curve of every file.
    out_dir = tmp_path / "eval"
    out = run_in_process(
        "eval.py", f"--workdir={workdir}", f"--dataset={folder}", f"--out={out_dir}",
        "--lmbdas=16,2048",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    with open(out_dir / "results.json") as f:
        aggregate = json.load(f)
    assert len(aggregate["results"]["bpp"]) == 2
    curve = aggregate["progressive"]["2048"]
    assert curve["layers"] == [1, 2, 3] and curve["num_images"] == 3
    assert curve["bpp"] == sorted(curve["bpp"])
    rows = [json.load(open(p)) for p in sorted((out_dir / "results").glob("*.json"))]
    assert len(rows) == 6 and all(r["decoded_matches_encoder"] for r in rows)
    assert all(r["progressive"][-1]["bpp"] == r["bpp"] for r in rows)


def test_the_published_configs_build_with_their_layer_counts_and_sizes():
    """qres34m: 12 latent layers, ~34M parameters; qarv_base: 9 latent layers, 93.4M
    (ours 92.0M). MACs per pixel are counted per layer."""
    from common.config import load_module, load_sweep

    expected = {"qres_vae": (12, 33e6, 36e6), "qarv": (9, 90e6, 95e6)}
    for name, (layers, low, high) in expected.items():
        config = load_module(f"configs/{name}.py").get_config()
        model = registry.build_model(config.model)
        assert len(model.latents) == layers and model.total_stride == 64
        parameters = sum(int(tf.size(v)) for v in model.trainable_variables)
        assert low < parameters < high, (name, parameters)
        macs = model.decoder_macs(512, 768)
        assert 1e4 < sum(macs.values()) / (512 * 768) < 1e6
    assert [e["model.lmbda"] for e in load_sweep("configs/qres_vae.py")] == [
        16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0
    ]  # fmt: skip


def test_the_weight_average_warms_up_is_checkpointed_and_finalizes(tmp_path):
    from pipelines.amortised_training import WeightAverage

    weight = tf.Variable(0.0)
    average = WeightAverage([weight], 0.999)
    weight.assign(10.0)
    average.update(0)  # decay min(0.999, 1 / 10): follows the weights at first
    assert float(average.averages[0]) == pytest.approx(9.0)
    path = tf.train.Checkpoint(average=average).save(str(tmp_path / "ckpt"))
    names = [name for name, _ in tf.train.list_variables(path)]
    assert sum("average/" in name for name in names) == 1  # the average, not the weight
    other = WeightAverage([weight], 0.999)
    tf.train.Checkpoint(average=other).restore(path).assert_existing_objects_matched()
    other.finalize()
    assert float(weight) == pytest.approx(9.0)
