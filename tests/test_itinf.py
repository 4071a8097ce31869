"""Iterative inference (SGA): the schedule, the relaxed rounding, and real refined files."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from common import metrics
from common.images import read_image, write_png
from common.rundir import prepare_workdir
from configs import itinf_sga
from models.amortised import sga
from pipelines import amortised_training, itinf
from pipelines.trained_run import load_trained_run
from tests.helpers import run_in_process, run_script, smooth_image
from tests.helpers import tiny_amortised_config as tiny_config


def test_temperature_follows_the_formula():
    for t in (0, 100, 200, 201, 1000, 2999, 50_000):
        expected = min(max(0.5 * math.exp(-5e-4 * (t - 200)), 1e-8), 0.5)
        assert float(sga.temperature(t)) == pytest.approx(expected, rel=1e-5)


def test_sga_samples_lie_between_the_grid_points_and_harden_as_tau_falls():
    v = tf.constant(np.linspace(-3.0, 3.0, 601), tf.float32)
    loc = tf.fill(v.shape, 0.3)
    for tau in (0.5, 0.1):
        sample = sga.sga_sample(v, tau, loc=loc, seed=[1, 2]).numpy()
        centred = v.numpy() - 0.3
        assert np.all(sample - 0.3 >= np.floor(centred) - 1e-5)
        assert np.all(sample - 0.3 <= np.floor(centred) + 1 + 1e-5)
    cold = sga.sga_sample(v, 1e-4, loc=loc, seed=[3, 4]).numpy()
    nearest = np.round(v.numpy() - 0.3) + 0.3
    assert np.mean(np.abs(cold - nearest) < 1e-3) > 0.97  # nearly always the nearer point
    with tf.GradientTape() as tape:
        tape.watch(v)
        total = tf.reduce_sum(sga.sga_sample(v, 0.5, seed=[5, 6]))
    gradient = tape.gradient(total, v).numpy()
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    images = tmp_path_factory.mktemp("images")
    for i in range(3):
        write_png(str(images / f"img{i}.png"), smooth_image(72, 88, seed=10 + i))
    workdir = str(tmp_path_factory.mktemp("two_layer_syn"))
    config = tiny_config("two_layer_syn", str(images))
    config.val.name = "none"
    prepare_workdir(workdir, config)
    amortised_training.train(config, workdir)
    return workdir, str(images)


def itinf_config(warm_start: str, images: str, steps: int = 60):
    config = itinf_sga.get_config()
    config.warm_start, config.data.root = warm_start, images
    # A short run: anneal within the steps instead of holding tau = 0.5 for 200 steps.
    config.itinf.num_steps, config.itinf.tau_start, config.itinf.tau_rate = steps, 0, 0.05
    config.itinf.log_every = 20
    return config


def test_sga_lowers_the_rd_loss_and_the_unchanged_decoder_decodes_it(trained_run, tmp_path):
    warm_start, images = trained_run
    out = str(tmp_path / "itinf")
    rows = itinf.run(itinf_config(warm_start, images), out)
    assert len(rows) == 3
    codec = load_trained_run(warm_start).codec  # the decoder, untouched by the refinement
    for row in rows:
        assert row["rd_loss_after"] < row["rd_loss_before"], row["image"]
        assert row["decoded_matches_encoder"]
        with open(os.path.join(out, row["bitstream"]), "rb") as f:
            data = f.read()
        assert row["bpp"] == pytest.approx(8 * len(data) / (72 * 88))
        decoded = codec.decode(data)
        original = read_image(os.path.join(images, f"{row['image']}.png"))
        assert metrics.psnr(decoded, original) == pytest.approx(row["psnr"])
        assert row["rd_loss_after"] == pytest.approx(row["bpp"] + row["lmbda"] * row["mse"])
    summary = json.load(open(os.path.join(out, "results.json")))
    assert summary["name"] == "two_layer_syn+sga"


def test_itinf_script_one_shard_and_bad_input(trained_run, tmp_path):
    warm_start, images = trained_run
    out = str(tmp_path / "unit")
    result = run_script(
        "itinf.py",
        "--config=configs/itinf_sga.py",
        "--hid=1",
        f"--config.warm_start={warm_start}",
        f"--config.data.root={images}",
        "--config.itinf.num_steps=20",
        "--config.itinf.tau_start=0",
        f"--workdir={out}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(os.path.join(out, "results"))) == ["img1.json"]  # shard 1 of 4
    assert "RD loss" in result.stdout
    result = run_in_process(
        "itinf.py",
        "--config=configs/itinf_sga.py",
        f"--config.warm_start={tmp_path / 'missing'}",
        f"--config.data.root={images}",
        f"--workdir={tmp_path / 'not_made'}",
    )
    assert result.returncode == 2 and result.stderr.strip().startswith("itinf.py: error:")
    assert not (tmp_path / "not_made").exists()  # rejected before anything is written
    assert "Traceback" not in result.stderr


def test_launcher_makes_one_unit_per_run_and_shard(trained_run, tmp_path):
    warm_start, images = trained_run
    result = run_in_process(
        "launch.py",
        "--main=itinf",
        "--config=configs/itinf_sga.py",
        f"--workdirs={warm_start}",
        f"--args=--config.data.root={images}",
        "--local",
        "--dry_run",
        f"--root={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    commands = [line for line in result.stdout.splitlines() if "itinf.py" in line]
    assert len(commands) == itinf_sga.NUM_SHARDS
    assert all(f"--config.warm_start={warm_start}" in c for c in commands)
