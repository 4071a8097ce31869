"""Per-tensor network steps (`fit.per_tensor_steps`, `C3Architecture.step_shifts`): the
model's steps, the header field, the fixed-point decoder and the encoder's search."""

import dataclasses

import numpy as np
import pytest

from coding.c3 import codec as c3_codec
from coding.c3.networks import C3Architecture, steps_problem
from coding.container import f32
from common.errors import BitstreamError
from common.images import to_float
from configs import c3_kodak, c3_plus
from models import registry
from models.c3.model import C3Model
from pipelines.per_image import make_fitter
from tests.helpers import STEPS, decode_in_other_processes, smooth_image, tiny_fit_config

PLUS_STEPS = (*STEPS, 2.0**-8, (2.0**-6, 2.0**-7))  # c3_plus: taps, context model pair


def moved_plus_model(height=24, width=40, seed=0):
    """c3_plus's architecture with random networks and latents (no fitting)."""
    model = registry.build_model(c3_plus.get_config().model, height=height, width=width)
    rng = np.random.default_rng(seed)
    for v in model.network_variables:
        v.assign(v + rng.normal(0, 0.05, v.shape).astype(np.float32))
    for v in model.latent_grids.trainable_variables:
        v.assign(rng.normal(scale=1.5, size=v.shape).astype(np.float32))
    return model


def some_shifts(model, seed=0) -> tuple[int, ...]:
    """Shifts in -2 ... 2, every kernel and bias its own, the inter-grid layers apart."""
    rng = np.random.default_rng(seed)
    shifts = rng.integers(-2, 3, len(model.network_variables))
    shifts[0] = 1  # at least one
    return tuple(int(k) for k in shifts)


def test_network_steps_apply_the_shifts():
    model = moved_plus_model()
    shifts = some_shifts(model)
    base = model.network_steps(*PLUS_STEPS)
    shifted = model.network_steps(*PLUS_STEPS, None, shifts)
    assert shifted == [s * 2.0**-k for s, k in zip(base, shifts, strict=True)]
    config = model.get_config()
    assert steps_problem(config, *PLUS_STEPS, None, shifts) is None
    too_far = (8,) + shifts[1:]
    assert "shift" in steps_problem(config, *PLUS_STEPS, None, too_far)
    coarse = (1.0, 1.0, 1.0, (1.0, 1.0), None, (-1,) * len(shifts))
    assert "outside" in steps_problem(config, *coarse)
    # The first layer's kernel 2^-1, its bias 2^-17: finer than 2^-12 x the kernel's.
    fine_bias = (-7, 7) + (0,) * (len(shifts) - 2)
    assert "bias" in steps_problem(config, *PLUS_STEPS, None, fine_bias)


def test_header_round_trip_with_step_shifts():
    model = moved_plus_model()
    shifts = some_shifts(model)
    plain = C3Architecture.from_model_config(model.get_config(), *PLUS_STEPS)
    arch = C3Architecture.from_model_config(model.get_config(), *PLUS_STEPS, None, shifts)
    header = arch.to_bytes()
    assert header[0] == plain.to_bytes()[0] == 4  # still c3_plus's preset
    assert len(header) == len(plain.to_bytes()) + len(shifts) // 2  # 4 bits per tensor
    assert C3Architecture.from_bytes(header) == arch
    assert arch.tensor_bits() == [b + k for b, k in zip(plain.tensor_bits(), shifts, strict=True)]
    # No shifts (or all zero): the header of before.
    zeros = (0,) * len(shifts)
    none = C3Architecture.from_model_config(model.get_config(), *PLUS_STEPS, None, zeros)
    assert none == plain and none.to_bytes() == plain.to_bytes()
    # The explicit header (an architecture no preset names) carries them too.
    explicit = dataclasses.replace(arch, q_step=f32(0.5))
    assert explicit.to_bytes()[0] == 0
    assert C3Architecture.from_bytes(explicit.to_bytes()) == explicit


def test_damaged_step_shifts_are_refused():
    model = moved_plus_model()
    shifts = some_shifts(model)
    arch = C3Architecture.from_model_config(model.get_config(), *PLUS_STEPS, None, shifts)
    header = arch.to_bytes()
    n = len(shifts) // 2
    with pytest.raises(BitstreamError, match="per-tensor steps"):
        C3Architecture.from_bytes(header[:-1])  # truncated
    zeros = header[:-n] + bytes([0x88] * n)  # flagged, all shifts 0
    with pytest.raises(BitstreamError, match="all zero"):
        C3Architecture.from_bytes(zeros)
    # The first layer's kernel at 2^0 (8 - 8), its bias at 2^-17 (10 + 7): too fine.
    fine = header[:-n] + bytes([0x0F]) + header[len(header) - n + 1 :]
    with pytest.raises(BitstreamError, match="bias step too fine"):
        C3Architecture.from_bytes(fine)
    # Kodak's architecture: its bias step 2^-24 + 7 is outside the format.
    kodak = registry.build_model(c3_kodak.get_config().model, height=16, width=16)
    kodak_arch = C3Architecture.from_model_config(kodak.get_config(), 2.0**-20, 2.0**-24)
    bad = dataclasses.replace(kodak_arch, step_shifts=(0, 7) * (len(kodak.network_variables) // 2))
    with pytest.raises(BitstreamError, match="per-tensor step"):
        C3Architecture.from_bytes(bad.to_bytes())


def test_file_with_step_shifts_decodes_the_same_everywhere(tmp_path):
    model = moved_plus_model(seed=3)
    steps = (*PLUS_STEPS, None, some_shifts(model, seed=3))
    model.set_network_integers(model.network_integers(*steps), *steps)
    encoded = c3_codec.encode(model, *steps)
    here = c3_codec.decode(encoded.data)
    assert here.arch.step_shifts == steps[5]
    for got, expected in zip(here.integers, model.network_integers(*steps), strict=True):
        np.testing.assert_array_equal(got, expected)
    # The fixed-point decoder follows the float model at these steps.
    floats = np.round(np.clip(model(np.zeros((24, 40, 3), np.float32), "round")[
        "reconstruction"].numpy(), 0, 1) * 255)  # fmt: skip
    assert np.abs(here.image.astype(int) - floats).max() <= 2
    path = tmp_path / "shifts.c3"
    path.write_bytes(encoded.data)
    from common.images import encode_png

    expected = encode_png(here.image)
    assert decode_in_other_processes(path) == [expected, expected]


def test_per_tensor_search_lowers_the_rd_loss_of_the_file():
    image = smooth_image(32, 48, seed=4)
    config = tiny_fit_config()
    config.network_rate = "file"  # the search counts the file's bits
    model = C3Model(32, 48, arm_hidden=(6,), synthesis_hidden=(6,), num_residual_layers=1)
    fitter = make_fitter(model, config)
    fitter.reset(to_float(image), lmbda=2e-3, seed=1)
    fitter._run_chunks("noise", 60)
    float_params = [v.numpy() for v in model.network_variables]
    losses, files = [], []
    for per_tensor in (False, True):
        for v, value in zip(model.network_variables, float_params, strict=True):
            v.assign(value)
        fitter.config.per_tensor_steps = per_tensor
        quantized = fitter.quantize_networks()
        encoded = c3_codec.encode(model, *quantized.steps)
        decoded = c3_codec.decode(encoded.data).image
        mse = np.mean((decoded / 255.0 - image / 255.0) ** 2)
        losses.append(quantized.loss)
        files.append(mse + 2e-3 * 8 * len(encoded.data) / (32 * 48))
        # The float model's 8-bit output, give or take the fixed point's rounding.
        assert np.abs(decoded.astype(int) - quantized.reconstruction).max() <= 1
    assert quantized.step_shifts is not None  # the search moved some tensor's step
    assert losses[1] < losses[0]
    assert files[1] < files[0]
