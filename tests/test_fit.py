import itertools

import numpy as np
import pytest
import tensorflow as tf

from common.errors import FitError
from common.images import to_float
from models.c3.fit import C3Fitter
from models.c3.model import C3Model
from tests.helpers import smooth_image, tiny_fit_config


@pytest.fixture(scope="module")
def fitter():
    return C3Fitter(C3Model(32, 48), tiny_fit_config())


def _initial_loss(fitter):
    loss, _ = fitter._loss("round")
    return float(loss)


def test_fit_lowers_the_loss_and_larger_lambda_gives_fewer_bits(fitter):
    image = to_float(smooth_image())
    fitter.reset(image, lmbda=1e-3, seed=0)
    before = _initial_loss(fitter)
    low = fitter.fit()
    assert low.loss < 0.5 * before
    # 60 steps is a toy: 17.7 dB with the straight-through output clip, 20.5 with C3's
    # hard clip (26.1 and 25.2 dB at 120 steps).
    assert low.psnr > 15.0
    assert low.noise_steps == 60 and 0 < low.ste_steps <= 10
    fitter.reset(image, lmbda=5e-2, seed=0)
    high = fitter.fit()
    assert high.bits_latents < low.bits_latents
    assert high.reconstruction.dtype == np.uint8 and high.reconstruction.shape == (32, 48, 3)


def test_cool_chic_5_proxy_and_learned_upsampling_fit():
    """fit.noise = "gaussian" and model.upsampling = "learned" fit as C3's recipe does:
    the loss falls, and the filters move from their initialisation."""
    config = tiny_fit_config()
    config.noise = "gaussian"
    config.temperature_start, config.temperature_end = 0.35, 0.08
    model = C3Model(32, 48, num_grids=5, upsampling="learned")
    start = model.upsampling.transposed.numpy().copy()
    fitter = C3Fitter(model, config)
    fitter.reset(to_float(smooth_image()), lmbda=1e-3, seed=0)
    before = _initial_loss(fitter)
    result = fitter.fit()
    assert result.loss < 0.5 * before and result.psnr > 15.0
    assert np.any(model.upsampling.transposed.numpy() != start)
    # The taps' own step, searched after the (weight, bias) pair.
    assert result.upsampling_step in config.upsampling_steps
    bad = tiny_fit_config()
    bad.noise = "uniform"
    with pytest.raises(FitError, match="fit.noise"):
        C3Fitter(C3Model(8, 8), bad)


def test_quantisation_search_picks_the_best_pair(fitter, caplog):
    image = to_float(smooth_image(seed=3))
    fitter.reset(image, lmbda=2e-3, seed=1)
    with caplog.at_level("INFO"):
        result = fitter.fit()
    # The search shows where it is: one line per step pair, "k of N".
    pairs = len(fitter.config.weight_steps) * len(fitter.config.bias_steps)
    assert f"step pair {pairs} of {pairs}" in caplog.text
    # Recompute every pair's loss from the float networks that the search started from.
    fitter.reset(image, lmbda=2e-3, seed=1)
    fitter._run_chunks("noise", fitter.config.num_noise_steps)
    fitter._run_chunks("ste", fitter.config.max_ste_steps)
    fitter._copy(fitter._state, fitter.best_state)
    float_params = [v.numpy() for v in fitter.model.network_variables]
    losses = {}
    for ws, bs in itertools.product(fitter.config.weight_steps, fitter.config.bias_steps):
        integers = fitter.model.network_integers(ws, bs)
        fitter.model.set_network_integers(integers, ws, bs)
        mse, bits, _, _, _ = fitter._evaluate()
        net = sum(fitter.network_bits(integers).values())
        losses[(ws, bs)] = float(mse) + 2e-3 * (float(bits) + net) / (32 * 48)
        for v, p in zip(fitter.model.network_variables, float_params, strict=True):
            v.assign(p)
    best_pair = min(losses, key=losses.get)
    assert (result.weight_step, result.bias_step) == best_pair
    assert abs(result.loss - losses[best_pair]) < 1e-6


def test_network_integers_round_trip(fitter):
    integers = fitter.model.network_integers(1e-3, 5e-4)
    fitter.model.set_network_integers(integers, 1e-3, 5e-4)
    again = fitter.model.network_integers(1e-3, 5e-4)
    for a, b in zip(integers, again, strict=True):
        np.testing.assert_array_equal(a, b)


# The subclasses below call C3Model.call explicitly, not through zero-argument super():
# autograph converts `call`, and its zero-argument super() finds `self` by inspecting the
# caller's frames, which once resolved to the wrong function in a full test run
# ("invalid literal for int() with base 10: 'noise'": `call` ran `__init__`'s code).


class _NanOnceModel(C3Model):
    """Returns a NaN distortion once: at the call when `countdown` reaches zero."""

    def __init__(self, height: int, width: int, **kwargs):
        C3Model.__init__(self, height, width, **kwargs)
        self.countdown = tf.Variable(-1, trainable=False)

    def call(self, target, mode="round", temperature=None, kumaraswamy_a=None, seed=None):
        out = C3Model.call(self, target, mode, temperature, kumaraswamy_a, seed)
        self.countdown.assign_sub(1)
        out["mse"] = tf.where(self.countdown == 0, np.float32(np.nan), out["mse"])
        return out


def test_nan_loss_restores_state_and_lowers_learning_rate(caplog):
    model = _NanOnceModel(32, 48)
    fitter = C3Fitter(model, tiny_fit_config(num_noise_steps=40, max_ste_steps=0))
    fitter.reset(to_float(smooth_image()), lmbda=1e-3)
    model.countdown.assign(26)  # the loss of step 25 (in the chunk of steps 20-39) is NaN
    with caplog.at_level("WARNING"):
        result = fitter.fit()
    assert "NaN/inf loss or gradient at step 25; restored the state of step 20" in caplog.text
    assert result.nan_recoveries == 1
    assert float(fitter.lr_scale.numpy()) == 0.5
    assert result.noise_steps == 40
    assert np.isfinite(result.loss)
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)


class _AlwaysNanModel(C3Model):
    def call(self, target, mode="round", temperature=None, kumaraswamy_a=None, seed=None):
        out = C3Model.call(self, target, mode, temperature, kumaraswamy_a, seed)
        out["mse"] = out["mse"] * np.float32(np.nan)
        return out


def test_persistent_nan_fails_with_a_clear_error():
    fitter = C3Fitter(_AlwaysNanModel(8, 8), tiny_fit_config(num_noise_steps=5, max_ste_steps=0))
    fitter.reset(np.zeros((8, 8, 3), np.float32), lmbda=1e-3)
    with pytest.raises(FitError, match="NaN"):
        fitter.fit()


def test_xla_compiled_fit_runs_and_matches_shapes():
    fitter = C3Fitter(
        C3Model(16, 24), tiny_fit_config(num_noise_steps=10, max_ste_steps=4, jit=True)
    )
    fitter.reset(to_float(smooth_image(16, 24)), lmbda=1e-3)
    result = fitter.fit()
    assert result.noise_steps == 10 and np.isfinite(result.loss)


def test_checkpoint_resume_continues_from_saved_step(tmp_path):
    config = tiny_fit_config(num_noise_steps=40, max_ste_steps=0)
    image = to_float(smooth_image())
    fitter = C3Fitter(C3Model(32, 48), config)
    fitter.reset(image, lmbda=1e-3)
    checkpoint = tf.train.Checkpoint(fitter=fitter)
    fitter._noise_chunk(tf.constant(20, tf.int64))
    path = checkpoint.save(str(tmp_path / "ckpt"))
    saved = [v.numpy() for v in fitter.model.trainable_variables]

    other = C3Fitter(C3Model(32, 48), config)
    other.reset(image, lmbda=1e-3)
    tf.train.Checkpoint(fitter=other).restore(path)
    assert int(other.noise_step.numpy()) == 20
    for a, b in zip(saved, other.model.trainable_variables, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert other.fit().noise_steps == 40


def test_invalid_fit_config_is_refused():
    config = tiny_fit_config(num_noise_steps=-1)
    with pytest.raises(FitError, match="invalid fit config"):
        C3Fitter(C3Model(8, 8), config)


def test_reset_rejects_wrong_image_shape(fitter):
    with pytest.raises(ValueError, match="shape"):
        fitter.reset(np.zeros((10, 10, 3), np.float32), lmbda=1e-3)


def test_per_module_steps_lower_the_loss_and_decode(caplog):
    """Cool-chic 5's per-module steps (fit.per_module_steps) with the file's own network
    bits (fit.network_rate = "file"): the greedy search can only lower the RD loss of the
    shared pair, the search counts what the file spends on the networks, and the file
    decodes to the symbols and reconstruction the search measured."""
    from coding.c3 import codec as c3_codec
    from pipelines.per_image import make_fitter

    config = tiny_fit_config()
    config.network_rate = "file"
    config.weight_steps = config.bias_steps = tuple(2.0**-k for k in range(5, 12))
    model = C3Model(32, 48)
    fitter = make_fitter(model, config)
    fitter.reset(to_float(smooth_image(seed=4)), lmbda=2e-3, seed=1)
    fitter._run_chunks("noise", 60)
    float_params = [v.numpy() for v in model.network_variables]
    shared = fitter.quantize_networks()
    assert shared.arm_steps is None
    for v, value in zip(model.network_variables, float_params, strict=True):
        v.assign(value)
    config.per_module_steps = True
    with caplog.at_level("INFO"):
        result = fitter.quantize_networks()
    assert "context model pair" in caplog.text and "synthesis pair" in caplog.text
    assert result.loss <= shared.loss
    assert result.arm_steps is not None  # this fit's context model wants its own pair
    again = fitter._quantized(result.steps, float_params)[0]
    assert again.loss == result.loss
    encoded = c3_codec.encode(model, *result.steps)
    # The search's network bits are the file's, up to the section's framing (its
    # length varint and the range coder's and the exp-Golomb padding's last bytes).
    assert abs(encoded.bits_networks - result.bits_networks) <= 64
    decoded = c3_codec.decode(encoded.data)
    assert decoded.arch.separate_arm_steps
    assert all(np.array_equal(a, b) for a, b in zip(decoded.symbols, model.symbols(), strict=True))
    assert np.abs(decoded.image.astype(int) - result.reconstruction).max() <= 1


@pytest.mark.parametrize("clip_latents", [True, False])
def test_gradient_clipping_of_all_or_of_the_networks_alone(clip_latents):
    """C3 clips the global norm of all gradients: a huge latent gradient shrinks the
    networks' own to nothing, and Adam's first step on them falls to ~eps-limited size.
    Cool-chic 5 (fit.grad_clip_latents = False) clips the networks' norm alone: their
    first Adam step is the full learning rate whatever the latents' gradients."""
    config = tiny_fit_config()
    config.grad_clip_latents = clip_latents
    fitter = C3Fitter(C3Model(16, 16), config)
    fitter.reset(to_float(smooth_image(16, 16)), lmbda=1e-3, seed=0)
    grads = [
        tf.fill(p.shape, 1e-3 if network else 1e6)
        for p, network in zip(fitter.params, fitter.is_network, strict=True)
    ]
    before = [p.numpy().copy() for p in fitter.params]
    norm = tf.linalg.global_norm(grads)
    fitter._adam_update(grads, norm, 1e-2)
    for p, start, network in zip(fitter.params, before, fitter.is_network, strict=True):
        step = float(np.max(np.abs(p.numpy() - start)))
        if not network:  # Adam's first step is the learning rate, clipped or not
            np.testing.assert_allclose(step, 1e-2, rtol=1e-3)
        elif clip_latents:  # 1e-3 x 0.1 / |g| ~ 1e-10 against Adam's eps 1e-8
            assert step < 2e-4
        else:
            np.testing.assert_allclose(step, 1e-2, rtol=1e-3)
