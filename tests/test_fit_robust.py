"""A fit never dies silently: the output clip keeps a gradient, a fit that is not
learning is restarted, and one that cannot learn fails with one clear error."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from common.errors import FitError
from common.metrics import psnr_from_mse
from configs import c3_kodak, c3_quickstart
from models import registry
from models.c3.fit import C3Fitter, warmup_extra_steps
from models.c3.synthesis import straight_through_clip

SIZE = 64


def crop(kind: str) -> np.ndarray:
    """64x64 images in [0, 1] with texture: near white, near black, or low contrast."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    texture = 0.5 + 0.25 * np.sin(9 * xx + 4 * yy)[..., None] + 0.1 * rng.normal(size=(64, 64, 3))
    base, span = {"bright": (0.7, 0.3), "dark": (0.0, 0.3), "low_contrast": (0.45, 0.12)}[kind]
    image = np.clip(base + span * np.clip(texture + 0.3 * xx[..., None], 0, 1), 0, 1)
    return (np.round(image * 255) / 255).astype(np.float32)


def flat_psnr(image: np.ndarray) -> float:
    return psnr_from_mse(float(np.mean((image - image.mean(axis=(0, 1))) ** 2)), peak=1.0)


@pytest.fixture(scope="module")
def fitters():
    """One fitter per schedule (compiled once for 64x64, reused across images)."""

    def fitter(module, lmbda, noise_steps, ste_steps, **fit):
        config = module.get_config()
        config.fit.num_noise_steps, config.fit.max_ste_steps = noise_steps, ste_steps
        config.fit.log_every = 50
        config.fit.weight_steps = config.fit.bias_steps = (2.0**-7, 2.0**-9)
        for k, v in fit.items():
            config.fit[k] = v
        model = registry.build_model(config.model, height=SIZE, width=SIZE)
        return C3Fitter(model, config.fit), lmbda

    return {
        "quickstart": fitter(c3_quickstart, 2e-3, 300, 40),  # the quickstart's schedule
        "issue": fitter(c3_kodak, 1e-3, 400, 50),  # the schedule that used to get stuck
    }


def test_straight_through_clip_clips_forward_and_passes_the_gradient():
    x = tf.constant([-0.5, 0.3, 1.7])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = straight_through_clip(x)
        loss = tf.reduce_sum(y * tf.constant([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(y.numpy(), [0.0, 0.3, 1.0])
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "kind,schedule",
    [
        ("bright", "issue"),
        ("bright", "quickstart"),
        ("dark", "issue"),
        ("low_contrast", "quickstart"),
    ],
)
def test_short_schedules_reach_a_sane_psnr_on_hard_images(fitters, schedule, kind):
    fitter, lmbda = fitters[schedule]
    image = crop(kind)
    fitter.reset(image, lmbda, seed=0)
    result = fitter.fit()
    # Far better than the flat mean-colour image (what a stuck fit falls short of).
    # Better than the flat mean-colour image, which a stuck fit (10.5 dB on the kodim23
    # crop that used to fail) falls far short of. At 64x64 the networks' bits dominate
    # the rate, so on a low-contrast image the best RD trade-off is not far above flat.
    assert result.psnr > flat_psnr(image) + 0.5, (kind, result.psnr, flat_psnr(image))
    assert result.psnr > 25
    assert result.restarts == 0  # the straight-through clip needs none here


def test_a_fit_that_is_not_learning_restarts_from_another_seed(fitters, caplog, monkeypatch):
    probe, lmbda = fitters["quickstart"]
    check = probe._learning_problem

    def first_attempt_fails():  # a problem at the first check of the first attempt only
        return "injected: loss flat" if int(probe.restarts.numpy()) == 0 else check()

    monkeypatch.setattr(probe, "_learning_problem", first_attempt_fails)
    probe.reset(crop("bright"), lmbda, seed=5)
    with caplog.at_level("WARNING"):
        result = probe.fit()
    assert "not learning (injected: loss flat): restart 1 of 2 from seed 1005" in caplog.text
    assert result.restarts == 1 and int(probe.seed.numpy()) == 1005
    assert float(probe.lr_scale.numpy()) == pytest.approx(0.5)
    assert result.noise_steps == 300  # the restarted attempt ran its whole schedule
    assert result.psnr > flat_psnr(crop("bright")) + 0.5


def test_a_fit_that_cannot_learn_fails_with_one_clear_line(fitters, caplog):
    base, lmbda = fitters["quickstart"]
    config = base.config.copy_and_resolve_references()
    config.learning_rate = 0.0  # nothing moves: the loss stays where it started
    config.num_noise_steps, config.max_restarts = 120, 1
    fitter = C3Fitter(base.model, config)
    fitter.reset(crop("dark"), lmbda, seed=0)
    with caplog.at_level("WARNING"), pytest.raises(FitError) as error:
        fitter.fit()
    message = error.value.report("codec.py")
    assert message.startswith("codec.py: error: fit failed: the fit is not learning: RD loss")
    assert "after 1 restart(s)" in message and "\n" not in message
    assert caplog.text.count("restart 1 of 1") == 1


def test_too_short_a_stage_1_is_not_judged(fitters):
    fitter, _ = fitters["quickstart"]
    assert not fitter._check_due(0, 50, total=60)  # shorter than stall_check_steps
    assert fitter._check_due(50, 100, total=300) and fitter._check_due(250, 300, total=300)
    assert not fitter._check_due(100, 150, total=300)


def test_warm_up_keeps_the_best_candidate_and_counts_its_iterations(fitters):
    base, lmbda = fitters["quickstart"]
    config = base.config.copy_and_resolve_references()
    config.warmup_candidates, config.warmup_keep, config.warmup_steps = 3, 2, 20
    config.num_noise_steps, config.max_ste_steps = 100, 0
    fitter = C3Fitter(base.model, config)
    fitter.reset(crop("dark"), lmbda, seed=7)
    records = fitter.warm_up()
    first = {r["seed"]: r["loss"] for r in records if r["round"] == 1}
    second = {r["seed"]: r["loss"] for r in records if r["round"] == 2}
    assert sorted(first) == [21, 22, 23]  # 3 x seed + k: disjoint from fit seed 6's and 8's
    assert sorted(second) == sorted(sorted(first, key=first.get)[:2])  # the best two go on
    kept = min(second, key=second.get)
    assert int(fitter.seed.numpy()) == kept and int(fitter.noise_step.numpy()) == 40
    assert fitter._hard_loss() == pytest.approx(second[kept], rel=1e-5)  # its state restored
    assert fitter.warm_up() == []  # done once per fit
    result = fitter.fit()
    assert result.noise_steps == 100
    assert result.iterations == 100 + (3 * 20 + 2 * 20 - 40)  # every candidate step counts
    assert warmup_extra_steps(config) == 3 * 20 + 2 * 20 - 40


def test_a_warm_up_longer_than_stage_1_is_skipped_and_logged(fitters, caplog):
    base, lmbda = fitters["quickstart"]
    config = base.config.copy_and_resolve_references()
    config.warmup_candidates, config.warmup_keep, config.warmup_steps = 3, 1, 50
    config.num_noise_steps, config.max_ste_steps = 60, 0  # the winner alone would run 100
    fitter = C3Fitter(base.model, config)
    fitter.reset(crop("dark"), lmbda, seed=0)
    with caplog.at_level(logging.WARNING):
        assert fitter.warm_up() == []
    assert "Warm-up skipped" in caplog.text and int(fitter.noise_step.numpy()) == 0
    assert warmup_extra_steps(config) == 0


def test_keep_best_restores_the_best_stage_1_parameters(fitters):
    base, lmbda = fitters["quickstart"]
    config = base.config.copy_and_resolve_references()
    config.keep_best_every, config.log_every, config.num_noise_steps = 40, 40, 120
    fitter = C3Fitter(base.model, config)
    fitter.reset(crop("bright"), lmbda, seed=0)
    seen = []
    hard_loss = fitter._hard_loss
    fitter._hard_loss = lambda: seen.append(hard_loss()) or seen[-1]
    fitter._run_chunks("noise", 120)
    assert len(seen) == 3 and float(fitter.kept_loss.numpy()) == pytest.approx(min(seen))
    for v in fitter.model.latent_grids.trainable_variables:  # make the last state worse
        v.assign_add(tf.random.stateless_normal(v.shape, seed=[1, 2]))
    assert hard_loss() > min(seen)
    fitter._restore_kept()
    assert hard_loss() == pytest.approx(min(seen), rel=1e-5)


def test_a_diverging_fit_is_rolled_back_to_the_kept_parameters(caplog):
    """With keep-best and a rollback tolerance, a check whose loss is far above the kept
    one restores the kept parameters, clears the optimiser state and halves the learning
    rate; within the tolerance nothing happens."""
    config = c3_kodak.get_config()
    config.fit.num_noise_steps, config.fit.max_ste_steps = 20, 0
    config.fit.log_every = 10
    config.fit.keep_best_every = 10
    config.fit.rollback_tolerance = 0.25
    model = registry.build_model(config.model, height=16, width=16)
    fitter = C3Fitter(model, config.fit)
    fitter.reset(crop("dark")[:16, :16], 1e-3)
    fitter._keep_best(0, 10, 20)  # keeps the initial parameters
    kept = [v.numpy() for v in fitter.params]
    fitter.adam_count.assign(5.0)
    for v in fitter.adam_v:
        v.assign(tf.ones_like(v))
    kept_loss = float(fitter.kept_loss.numpy())
    for v in model.latent_grids.trainable_variables:  # the parameters move on
        v.assign(v + 1.0)
    # A loss within the tolerance: nothing happens.
    fitter._hard_loss = lambda: 1.2 * kept_loss
    fitter._keep_best(10, 20, 40)
    assert int(fitter.rollbacks.numpy()) == 0 and float(fitter.lr_scale.numpy()) == 1.0
    # Diverged: rolled back.
    fitter._hard_loss = lambda: 3.0 * kept_loss
    with caplog.at_level(logging.WARNING):
        fitter._keep_best(20, 30, 40)
    assert int(fitter.rollbacks.numpy()) == 1 and float(fitter.lr_scale.numpy()) == 0.5
    for v, k in zip(fitter.params, kept, strict=True):
        np.testing.assert_array_equal(v.numpy(), k)
    assert float(fitter.adam_count.numpy()) == 0.0
    assert all(not np.any(v.numpy()) for v in fitter.adam_v)
    assert "diverging" in caplog.text
