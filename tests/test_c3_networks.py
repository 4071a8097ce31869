"""The fixed-point C3 decoder networks: header round trip, shapes, closeness to the float model."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from coding.c3.networks import (
    C3Architecture,
    IntegerC3,
    integer_antialias_matrix,
    integer_bilinear_taps,
    prepare_parameters,
)
from common.errors import BitstreamError
from configs import c3_clic2020, c3_kodak, coolchic
from models import registry
from models.c3.model import C3Model
from models.c3.upsampling import bilinear_taps
from tests.helpers import STEPS, assert_rows_follow, random_model

# Cool-chic 5's per-module steps: the synthesis's pair, no learned upsampling, and the
# context model's own (coarser) pair.
PER_MODULE = (2.0**-9, 2.0**-11, None, (2.0**-6, 2.0**-9))


@pytest.mark.parametrize("module", [c3_kodak, c3_clic2020, coolchic])
def test_header_round_trip_and_shapes(module):
    model = registry.build_model(module.get_config().model, height=33, width=47)
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    assert C3Architecture.from_bytes(arch.to_bytes()) == arch
    assert arch.network_shapes() == [tuple(v.shape) for v in model.network_variables]


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(height=0), "image size"),
        (dict(height=65535, width=65535), "pixels"),
        (dict(num_grids=0), "number of grids"),
        (dict(residual_kernel_size=4), "residual kernel"),
        (dict(scale_range=(2.0, 1.0)), "scale range"),
        (dict(q_step=float("nan")), "q_step"),
    ],
)
def test_invalid_header_is_a_bitstream_error(change, message):
    model = registry.build_model(c3_kodak.get_config().model, height=16, width=16)
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    bad = dataclasses.replace(arch, **change)
    with pytest.raises(BitstreamError, match=message):
        C3Architecture.from_bytes(bad.to_bytes())


def test_per_module_steps_header_and_parameters():
    model = random_model()
    shared = C3Architecture.from_model_config(model.get_config(), *STEPS)
    arch = C3Architecture.from_model_config(model.get_config(), *PER_MODULE)
    assert C3Architecture.from_bytes(arch.to_bytes()) == arch
    assert arch.separate_arm_steps and arch.arm_bits == (6, 9) and not shared.separate_arm_steps
    assert shared.arm_bits == (shared.weight_bits, shared.bias_bits) == (8, 10)
    assert len(arch.to_bytes()) == len(shared.to_bytes()) + 2  # the context model's pair
    steps = model.network_steps(*PER_MODULE)
    arm = {id(v) for v in model.context_model.trainable_variables}
    for v, step in zip(model.network_variables, steps, strict=True):
        kernel = len(v.shape) > 1
        expected = (
            (2.0**-6 if kernel else 2.0**-9) if id(v) in arm else (2.0**-9 if kernel else 2.0**-11)
        )
        assert step == expected, v.name


def test_steps_must_be_powers_of_two():
    model = registry.build_model(c3_kodak.get_config().model, height=16, width=16)
    with pytest.raises(ValueError, match="power of two"):
        C3Architecture.from_model_config(model.get_config(), 1e-3, 2.0**-8)


@pytest.mark.parametrize("n_in,n_out", [(12, 768), (3, 47), (1, 33), (24, 48), (47, 47)])
def test_integer_bilinear_taps_match_the_float_taps(n_in, n_out):
    x = np.random.default_rng(0).normal(size=n_in)
    i0, i1, weight = integer_bilinear_taps(n_in, n_out)
    ours = x[i0] + (x[i1] - x[i0]) * weight / 256
    f0, f1, float_weight = bilinear_taps(n_in, n_out)
    reference = x[f0] + (x[f1] - x[f0]) * float_weight
    # Weights rounded to 2^-8 (exact for power-of-two ratios such as 12 -> 768).
    np.testing.assert_allclose(ours, reference, atol=np.abs(np.diff(x)).max(initial=0) / 512)


@pytest.mark.parametrize("n_in,n_out", [(48, 24), (47, 24), (33, 17), (2, 1), (5, 5)])
def test_integer_antialias_resize_matches_tf(n_in, n_out):
    matrix = integer_antialias_matrix(n_in, n_out)
    assert np.all(matrix.sum(axis=1) == 256)
    x = np.random.default_rng(0).normal(size=(n_in, 3)).astype(np.float32)
    reference = tf.image.resize(x[None, :, :, None], (n_out, 3), antialias=True)[0, :, :, 0]
    np.testing.assert_allclose(matrix @ x / 256, reference.numpy(), atol=0.02)


def integer_model(model: C3Model, steps=STEPS) -> IntegerC3:
    """The fixed-point networks of `model` with its networks quantised at `steps`."""
    model.set_network_integers(model.network_integers(*steps), *steps)
    arch = C3Architecture.from_model_config(model.get_config(), *steps)
    return IntegerC3(arch, prepare_parameters(arch, model.network_integers(*steps)))


@pytest.mark.parametrize(
    "module,steps", [(c3_kodak, STEPS), (coolchic, STEPS), (c3_kodak, PER_MODULE)]
)
def test_context_model_matches_the_float_model(module, steps):
    model = random_model(module.get_config().model)
    integer = integer_model(model, steps)
    rng = np.random.default_rng(1)
    context = rng.integers(-6, 7, (2000, len(model.context_model.offsets))).astype(np.int32)
    loc, scale = model.context_model.distribution_params(tf.constant(context * model.q_step))
    rows, rounded = integer.context_rows(tf.constant(context))
    assert_rows_follow(loc, scale, model.q_step, rows, rounded)


@pytest.mark.parametrize("steps", [STEPS, PER_MODULE])
def test_synthesis_matches_the_float_model(steps):
    model = random_model(height=24, width=40)
    integer = integer_model(model, steps)
    rng = np.random.default_rng(2)
    symbols = [rng.integers(-3, 4, s).astype(np.int32) for s in model.grid_shapes]
    model.latent_grids.assign_symbols(symbols)
    target = np.zeros((24, 40, 3), np.float32)
    floats = np.round(model(target, mode="round")["reconstruction"].numpy() * 255)
    ours = integer.synthesize([tf.constant(s) for s in symbols]).numpy()
    assert np.abs(ours.astype(int) - floats).max() <= 1
    assert np.mean(ours != floats) < 0.05
