"""The amortised codecs end to end: training, real files, decoding elsewhere, bad input."""

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from coding import container
from coding.amortised.hyper_synthesis import FixedPointHyperSynthesis
from common import schedules
from common.errors import BitstreamError
from common.images import encode_png, write_png
from models import registry
from models.amortised import hyperprior
from models.amortised.build import AMORTISED_MODELS
from pipelines import amortised_training
from pipelines.trained_run import load_trained_run
from tests.helpers import ROOT, TINY_AMORTISED, run_in_process, smooth_image
from tests.helpers import tiny_amortised_config as tiny_config

# Published decoder FLOPs per pixel at 512x768, hyper-synthesis included (zoo.md).
PUBLISHED_FLOPS = {"mbt2018_mean": 217_940, "two_layer_syn": 41_035, "jpegl": 32_788}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    os.makedirs(root / "nested")
    for i in range(3):
        write_png(str(root / f"train{i}.png"), smooth_image(72, 88, seed=i))
    write_png(str(root / "nested" / "deep.png"), smooth_image(96, 64, seed=7))
    return str(root)


@pytest.fixture(scope="module")
def trained(image_folder, tmp_path_factory):
    """Each model trained for 30 steps; name -> (workdir, summary)."""
    runs = {}
    for name in AMORTISED_MODELS:
        workdir = str(tmp_path_factory.mktemp(name))
        config = tiny_config(name, image_folder)
        from common.rundir import prepare_workdir

        prepare_workdir(workdir, config)
        runs[name] = (workdir, amortised_training.train(config, workdir))
    return runs


@pytest.mark.parametrize("name", AMORTISED_MODELS)
def test_training_lowers_the_loss(trained, name):
    workdir, summary = trained[name]
    losses = [loss for _, loss in summary["loss_history"]]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    assert summary["steps"] == 30
    assert os.path.isfile(os.path.join(workdir, "checkpoints", "ckpt-30.index"))
    assert json.load(open(os.path.join(workdir, "validation.json")))[-1]["step"] == 30
    assert os.listdir(os.path.join(workdir, "tensorboard", "train"))


def fixed_point_forward_pass(codec, image: np.ndarray) -> np.ndarray:
    """What the decoder must reproduce, computed here from the model's parts: z quantised,
    the fixed-point hyper-synthesis's mean, y quantised around it, the synthesis."""
    height, width = image.shape[:2]
    y, z = codec.analyse(image)
    if codec.hyper:
        mu, _ = codec.hyper_synthesis(codec.entropy_models["z"].quantize(z))
        y_hat = codec.entropy_models["y"].quantize(y, loc=mu)
    else:
        y_hat = codec.entropy_models["y"].quantize(y)
    x_hat = np.clip(codec.model.synthesis(y_hat)[0, :height, :width].numpy(), 0, 1)
    return np.round(x_hat * 255).astype(np.uint8)


@pytest.mark.parametrize("name", AMORTISED_MODELS)
def test_files_decode_to_the_quantised_forward_pass(trained, name):
    workdir, _ = trained[name]
    codec = load_trained_run(workdir).codec
    image = smooth_image(100, 150, seed=3)  # not a multiple of the stride: padded, cropped
    encoded = codec.compress(image)
    decoded = codec.decompress(encoded.data)
    assert decoded.image.shape == image.shape
    np.testing.assert_array_equal(decoded.image, encoded.reconstruction)
    # Exactly the fixed-point forward pass. (Not the float model's pass: its float
    # hyper-synthesis moves some means across a rounding boundary, and in a shallow
    # decoder one flipped symbol changes a whole 16x16 block; that comparison was flaky.)
    np.testing.assert_array_equal(decoded.image, fixed_point_forward_pass(codec, image))
    assert codec.decode(codec.encode(image)).shape == image.shape  # the common interface
    # Measured bits at most 2 % above the estimate plus the container's bytes. They can be
    # a little below it: the range coder's 16-bit tables of these 30-step models give
    # their latents up to ~3 % fewer bits than the float density (on a trained model
    # the two agree closely: docs/amortised.md).
    sections = container.parse(encoded.data).sections
    overhead = 8 * (len(encoded.data) - sum(len(s) for s in sections))
    estimate = sum(encoded.bits_estimated.values()) + overhead
    assert 0.96 * estimate <= 8 * len(encoded.data) <= 1.02 * estimate


def test_fixed_point_hyper_synthesis_matches_the_float_one(trained):
    workdir, _ = trained["mbt2018_mean"]
    model = load_trained_run(workdir).codec.model
    fixed = FixedPointHyperSynthesis(model.hyper_synthesis)
    z_hat = tf.round(tf.random.stateless_normal([1, 3, 5, 12], seed=[1, 2]) * 4)
    mu, indexes = fixed(z_hat)
    mu_float, log_scale = model.hyper_synthesis(z_hat)
    assert float(tf.reduce_max(tf.abs(mu - mu_float))) < 1e-2
    float_indexes = tf.clip_by_value(tf.round(hyperprior.scale_index(log_scale)), 0, 63)
    assert np.mean(indexes.numpy() == float_indexes.numpy()) > 0.99
    assert indexes.dtype == tf.int32 and 0 <= indexes.numpy().min() <= indexes.numpy().max() < 64


DECODE_IN_SUBPROCESS = """
import sys
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(int(sys.argv[1]))
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[2]))
from common.images import encode_png
from pipelines.trained_run import load_trained_run
codec = load_trained_run(sys.argv[3]).codec
sys.stdout.buffer.write(encode_png(codec.decode(open(sys.argv[4], "rb").read())))
"""


def test_another_process_with_other_threads_decodes_identically(trained, tmp_path):
    workdir, _ = trained["mbt2018_mean"]
    encoded = load_trained_run(workdir).codec.compress(smooth_image(130, 70, seed=5))
    path = tmp_path / "image.lz"
    path.write_bytes(encoded.data)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    for inter, intra in [(1, 1)]:  # this process runs with the default (all cores)
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                DECODE_IN_SUBPROCESS,
                str(inter),
                str(intra),
                workdir,
                str(path),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        assert out.stdout == encode_png(encoded.reconstruction)


def test_damaged_files_and_foreign_models_are_refused(trained):
    workdir, _ = trained["mbt2018_mean"]
    codec = load_trained_run(workdir).codec
    data = codec.encode(smooth_image(64, 64, seed=1))
    with pytest.raises(BitstreamError, match="truncated"):
        codec.decode(data[:-5])
    with pytest.raises(BitstreamError, match="two_layer_syn"):
        load_trained_run(trained["two_layer_syn"][0]).codec.decode(data)
    rng = np.random.default_rng(0)
    outcomes = set()
    parsed = container.parse(data)
    header_end = len(data) - sum(len(s) for s in parsed.sections)
    for _ in range(10):  # payload damage: refused by the section checksums
        damaged = bytearray(data)
        for _ in range(3):
            damaged[rng.integers(header_end, len(damaged))] ^= 1 << int(rng.integers(8))
        with pytest.raises(BitstreamError, match="checksum"):
            codec.decode(bytes(damaged))
    for _ in range(20):  # crafted: valid checksums over garbage; an image or an error
        sections = [bytearray(s) for s in parsed.sections]
        for _ in range(16):
            section = sections[int(rng.integers(len(sections)))]
            section[rng.integers(len(section))] ^= 1 << int(rng.integers(8))
        crafted = container.Container(parsed.codec, parsed.header, tuple(map(bytes, sections)))
        try:
            outcomes.add(codec.decode(crafted.to_bytes()).shape)
        except BitstreamError:
            outcomes.add("error")
    assert outcomes <= {(64, 64, 3), "error"}


def test_codec_and_eval_scripts_with_a_trained_run(trained, image_folder, tmp_path):
    workdir, _ = trained["two_layer_syn"]
    source = os.path.join(image_folder, "train0.png")
    target, decoded = str(tmp_path / "a.lz"), str(tmp_path / "a.png")
    out = run_in_process("codec.py", "encode", "-i", source, "-o", target, f"--workdir={workdir}")
    assert out.returncode == 0, out.stderr[-2000:]
    out = run_in_process("codec.py", "decode", "-i", target, "-o", decoded, f"--workdir={workdir}")
    assert out.returncode == 0, out.stderr[-2000:]
    out = run_in_process("codec.py", "decode", "-i", target, "-o", str(tmp_path / "b.png"))
    assert out.returncode == 2 and "--workdir" in out.stderr
    assert not os.path.exists(tmp_path / "b.png")
    evaluation = str(tmp_path / "eval")
    out = run_in_process(
        "eval.py", f"--workdir={workdir}", f"--dataset={image_folder}", f"--out={evaluation}"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # The folder's images by the one rule: nested ones too (nested/deep.png: nested_deep).
    names = sorted(os.listdir(os.path.join(evaluation, "results")))
    assert names == ["nested_deep.json", "train0.json", "train1.json", "train2.json"]
    rows = [json.load(open(os.path.join(evaluation, "results", name))) for name in names]
    for row in rows:
        size = os.path.getsize(os.path.join(evaluation, row["bitstream"]))
        pixels = 96 * 64 if row["image"] == "nested_deep" else 72 * 88
        assert row["bpp"] == pytest.approx(8 * size / pixels)
        assert row["decoded_matches_encoder"] and row["psnr"] > 0 and row["steps"] == 30
        assert row["encode_seconds"] > 0 and row["decode_seconds"] > 0
        assert row["macs_per_pixel"] > 0 and row["bpp_estimated"] > 0
    summary = json.load(open(os.path.join(evaluation, "results.json")))
    assert summary["results"]["bpp"][0] == pytest.approx(np.mean([r["bpp"] for r in rows]))
    out = run_in_process("eval.py", f"--workdir={workdir}")
    assert out.returncode == 2 and "--dataset" in out.stderr
    # By default each dataset gets its own folder: a second one does not overwrite the first
    # (two small folders: the four-image folder's rows are checked above).
    for name, count in (("one", 1), ("two", 2)):
        os.mkdir(tmp_path / name)
        for i in range(count):
            shutil.copy(source, tmp_path / name / f"image{i}.png")
    for name in ("one", "two"):
        out = run_in_process("eval.py", f"--workdir={workdir}", f"--dataset={tmp_path / name}")
        assert out.returncode == 0, out.stderr[-2000:]
    first = json.load(open(os.path.join(workdir, "eval", "one", "results.json")))
    second = json.load(open(os.path.join(workdir, "eval", "two", "results.json")))
    assert first["results"]["num_images"] == [1] and second["results"]["num_images"] == [2]


@pytest.mark.parametrize("name,published", sorted(PUBLISHED_FLOPS.items()))
def test_decoder_cost_matches_the_published_flops(name, published):
    config = importlib.import_module(f"configs.{name}").get_config()
    model = registry.build_model(config.model)  # counting needs no weights
    flops = amortised_training.decoder_macs_per_pixel(model, 512, 768)["flops_total"]
    assert abs(flops / published - 1) < 0.05


def test_schedules_follow_the_recipe():
    lr = [
        float(schedules.warmup_step_decay(s, 1000, 1e-4, 0.02, 0.8, 0.1))
        for s in (0, 9, 19, 500, 799, 800, 999)
    ]
    np.testing.assert_allclose(lr, [5e-6, 5e-5, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-5)
    lam = [float(schedules.lambda_warmup(s, 1000, 0.01, 10, 0.2, 0.01)) for s in (0, 199, 200)]
    np.testing.assert_allclose(lam, [0.1, 0.1, 0.01], rtol=1e-6)
    assert float(schedules.lambda_warmup(0, 1000, 0.02, 10, 0.2, 0.01)) == pytest.approx(0.02)


def test_scale_table_constants():
    import math

    assert hyperprior.LOG_SCALE_MIN == pytest.approx(math.log(0.11), abs=1e-15)
    assert hyperprior.LOG_SCALE_MAX == pytest.approx(math.log(256.0), abs=1e-15)
    assert float(hyperprior.scale_from_index(63.0)) == pytest.approx(256.0, rel=1e-5)


def _train_args(config: str, workdir: str, data: str, *extra: str) -> list[str]:
    flags = [
        f"--config={config}",
        f"--workdir={workdir}",
        "--config.data.name=folder",
        f"--config.data.root={data}",
        "--config.data.patch_size=64",
        "--config.train.batch_size=2",
        "--config.val.name=none",
    ]
    flags += [f"--config.{k}={v}".replace(" ", "") for k, v in TINY_AMORTISED.items()]
    return flags + list(extra)


def test_training_resumes_after_being_killed(image_folder, tmp_path):
    workdir = str(tmp_path / "run")
    args = _train_args(
        "configs/mbt2018_mean.py",
        workdir,
        image_folder,
        "--config.train.num_steps=3000",
        "--config.train.log_every=5",
        "--config.train.checkpoint_every=5",
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 240
    # Wait on what the resume reads: the manager's state file naming a checkpoint at step
    # >= 10. (Its ckpt-N.index appears before the state file names it: waiting on the
    # index file, a kill in between left the state at step 5, a flaky failure.)

    def latest_step() -> int:
        latest = tf.train.latest_checkpoint(checkpoints) if os.path.isdir(checkpoints) else None
        return int(latest.rsplit("-", 1)[1]) if latest else 0

    while time.time() < deadline and latest_step() < 10:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)  # no chance to save: resume from the periodic one
    process.wait(timeout=60)
    killed_at = tf.train.latest_checkpoint(checkpoints)
    assert killed_at is not None
    step = int(killed_at.rsplit("-", 1)[1])
    assert 10 <= step < 3000
    out = run_in_process(
        "train.py",
        *args[:-3],
        f"--config.train.num_steps={step + 10}",
        "--config.train.log_every=5",
        "--config.train.checkpoint_every=5",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"(step {step})" in out.stderr
    summary = json.load(open(os.path.join(workdir, "train_summary.json")))
    assert summary["steps"] == step + 10
    assert [s for s, _ in summary["loss_history"]] == [step + 5, step + 10]


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable"])
def test_bad_training_data_fails_with_one_line(case, tmp_path):
    data = tmp_path / "data"
    if case != "missing":
        data.mkdir()
    if case == "unreadable":
        (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = run_in_process(
        "train.py",
        *_train_args(
            "configs/mbt2018_mean.py", str(tmp_path / "r"), str(data), "--config.train.num_steps=2"
        ),
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("train.py: error:") and "Traceback" not in out.stderr
    expected = {"missing": "not a folder", "empty": "no images", "unreadable": "broken.png"}
    assert expected[case] in lines[-1]


def test_a_missing_validation_set_warns_and_training_goes_on(image_folder, tmp_path):
    out = run_in_process(
        "train.py",
        *_train_args("configs/mbt2018_mean.py", str(tmp_path / "r"), image_folder,
                     "--config.train.num_steps=2"),
        "--config.val.name=kodak",
        f"--config.val.root={tmp_path / 'no_kodak'}",
        "--config.val.kodak_url=http://127.0.0.1:9",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    warning = [line for line in out.stderr.splitlines() if "Training without validation" in line]
    assert warning and "--config.val.root" in warning[0] and "kodim01.png" in warning[0]
    assert "--config.data.root" not in warning[0]
    assert not os.path.exists(tmp_path / "r" / "validation.json")


def test_codec_with_an_untrained_run_is_one_error_line(image_folder, tmp_path):
    from common.rundir import prepare_workdir

    workdir = tmp_path / "untrained"
    prepare_workdir(str(workdir), tiny_config("mbt2018_mean", image_folder))
    source = os.path.join(image_folder, "train0.png")
    out = run_in_process(
        "codec.py", "encode", "-i", source, "-o", str(tmp_path / "a.lz"), f"--workdir={workdir}"
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and lines[-1].startswith("codec.py: error:"), out.stderr
    assert "no checkpoint" in lines[-1] and "Traceback" not in out.stderr
    assert not (tmp_path / "a.lz").exists()
