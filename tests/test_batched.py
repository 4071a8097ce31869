"""Batched fitting (models/c3/batched.py): N fits advanced by one compiled step give what
N lone fits give, each member's file decodes, and one member's NaN leaves the others
alone; `fit.lambdas` writes one file and results row per lambda."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from coding.weights import code_costs
from common import metrics
from common.images import to_float, write_png
from models.c3.batched import BatchedFit
from models.c3.fit import C3Fitter
from models.c3.model import C3Model
from pipelines.per_image import encode_and_verify, fit_lambdas
from tests.helpers import run_in_process, smooth_image, tiny_fit_config

LAMBDAS = (1e-3, 8e-3, 4e-2)
SEED = 3


def _fitter():
    return C3Fitter(C3Model(24, 32), tiny_fit_config(40, 8), code_costs)


@pytest.fixture(scope="module")
def image():
    return smooth_image(24, 32)


@pytest.fixture(scope="module")
def lone(image):
    """The three lambdas fitted one after the other by one fitter."""
    fitter, results = _fitter(), []
    for lmbda in LAMBDAS:
        fitter.reset(to_float(image), lmbda, SEED)
        results.append(fitter.fit())
    return results


def test_a_batched_fit_equals_lone_fits_and_each_file_decodes(image, lone):
    fitters = [_fitter() for _ in LAMBDAS]
    for fitter, lmbda in zip(fitters, LAMBDAS, strict=True):
        fitter.reset(to_float(image), lmbda, SEED)
    batch = BatchedFit(fitters)
    results = batch.fit()
    # 40 stage-1 steps in chunks of 20 + one stage-2 chunk: one compiled call per chunk
    # advanced all three members.
    assert batch.chunks == 3
    for alone, together, fitter in zip(lone, results, fitters, strict=True):
        assert together.noise_steps == alone.noise_steps == 40
        assert together.ste_steps == alone.ste_steps
        assert together.loss == pytest.approx(alone.loss, rel=1e-4)
        assert together.bits_latents == pytest.approx(alone.bits_latents, rel=1e-3)
        assert together.psnr == pytest.approx(alone.psnr, abs=0.01)
        # The file decodes (its latents checked equal to the encoder's), to the fit's
        # image up to the fixed-point synthesis's rounding.
        _, decoded = encode_and_verify(fitter, together, "member")
        assert metrics.psnr(decoded.image, image) == pytest.approx(together.psnr, abs=0.2)
    # Different lambdas, different rates: the members did not share state.
    assert results[0].bits_latents > results[1].bits_latents > results[2].bits_latents


def test_a_members_nan_leaves_the_others_alone(image, lone):
    """Member 1 meets a NaN loss at stage-1 step 5 (once): it is rewound alone and
    finishes; member 0 runs exactly as its lone fit."""
    fitters = [_fitter() for _ in range(2)]
    for fitter in fitters:
        fitter.reset(to_float(image), LAMBDAS[0], SEED)
    poisoned = fitters[1]
    armed = tf.Variable(True)
    original = poisoned._loss

    def loss_with_a_nan(*args, **kwargs):
        loss, out = original(*args, **kwargs)
        hit = armed & tf.equal(poisoned.noise_step, 5)
        armed.assign(armed & tf.logical_not(hit))
        return tf.where(hit, tf.constant(np.nan, tf.float32), loss), out

    poisoned._loss = loss_with_a_nan
    clean, recovered = BatchedFit(fitters).fit()
    assert not armed.numpy()
    assert clean.nan_recoveries == 0 and recovered.nan_recoveries == 1
    assert clean.loss == pytest.approx(lone[0].loss, rel=1e-4)
    assert np.isfinite(recovered.loss) and recovered.noise_steps == 40
    # Rewound to the chunk's start at half the learning rate: another fit than member 0's.
    assert float(poisoned.lr_scale.numpy()) == 0.5
    assert float(fitters[0].lr_scale.numpy()) == 1.0


def test_members_must_share_the_chunking():
    config = tiny_fit_config()
    config.log_every = 7
    with pytest.raises(ValueError, match="log_every"):
        BatchedFit([_fitter(), C3Fitter(C3Model(24, 32), config)])
    with pytest.raises(ValueError, match="at least one"):
        BatchedFit([])


def test_fit_lambdas_parsing():
    from configs import c3_quickstart

    config = c3_quickstart.get_config()
    assert fit_lambdas(config) == [config.model.lmbda]
    config.fit.lambdas = "1e-3, 2e-3,4e-2"
    assert fit_lambdas(config) == [1e-3, 2e-3, 4e-2]
    from common.errors import FitError

    for bad in ("1e-3,x", "1e-3,1e-3", "-1"):
        config.fit.lambdas = bad
        with pytest.raises(FitError, match="fit.lambdas"):
            fit_lambdas(config)


def test_train_with_lambdas_writes_a_file_and_row_per_lambda(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_png(str(data / "img.png"), smooth_image(24, 32, seed=1))
    workdir = tmp_path / "run"
    result = run_in_process(
        "train.py",
        "--config=configs/c3_quickstart.py",
        f"--workdir={workdir}",
        f"--config.data.root={data}",
        "--config.data.name=folder",
        "--config.fit.num_noise_steps=20",
        "--config.fit.max_ste_steps=4",
        "--config.fit.log_every=10",
        "--config.fit.weight_steps=(0.0078125,)",
        "--config.fit.bias_steps=(0.0078125,)",
        "--config.fit.lambdas=2e-3,3e-2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {}
    for lmbda in ("0.002", "0.03"):
        name = f"img@{lmbda}"
        assert os.path.getsize(workdir / "bitstreams" / f"{name}.c3") > 0
        with open(workdir / "results" / f"{name}.json") as f:
            row = json.load(f)
        rows[lmbda] = row = row[0] if isinstance(row, list) else row
        assert row["image"] == "img" and row["lmbda"] == float(lmbda)
        assert row["batch_lambdas"] == [2e-3, 3e-2]
        size = os.path.getsize(workdir / "bitstreams" / f"{name}.c3")
        assert row["bpp"] == pytest.approx(8 * size / (24 * 32))
    assert rows["0.002"]["bpp"] > rows["0.03"]["bpp"]
    with open(workdir / "results.json") as f:
        assert sorted(json.load(f)["results"]["lmbda"]) == [2e-3, 3e-2]  # a point each
