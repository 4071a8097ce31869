"""Cool-chic 5's learned upsampling (models/c3/upsampling.py) and its fixed-point decoder."""

import numpy as np
import pytest
import tensorflow as tf

from coding.c3 import codec as c3_codec
from coding.c3.networks import C3Architecture, IntegerC3, prepare_parameters
from models.c3.model import C3Model
from models.c3.upsampling import (
    LearnedUpsampling,
    build_upsampling,
    learned_cascade,
    transposed_taps,
)
from tests.helpers import STEPS, run_script


def keys_cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    t = np.abs(t)
    near = (a + 2) * t**3 - (a + 3) * t**2 + 1
    far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_upsample_1d(x: np.ndarray, n_out: int) -> np.ndarray:
    """x (n,) -> (n_out,): bicubic (a = -0.75), half-pixel centres, edge clamp, x2."""
    n = len(x)
    out = np.zeros(n_out)
    for m in range(n_out):
        centre = (m + 0.5) / 2 - 0.5
        base = int(np.floor(centre))
        for j in range(base - 1, base + 3):
            out[m] += keys_cubic(centre - j) * x[min(max(j, 0), n - 1)]
    return out


def bicubic_upsample(grid: np.ndarray, shape) -> np.ndarray:
    rows = np.stack([bicubic_upsample_1d(c, shape[0]) for c in grid.T], axis=1)
    return np.stack([bicubic_upsample_1d(r, shape[1]) for r in rows])


@pytest.mark.parametrize("shape", [(16, 24), (15, 23)])
def test_learned_upsampling_is_bicubic_and_dirac_at_initialisation(shape):
    rng = np.random.default_rng(0)
    fine = rng.normal(size=shape)
    coarse = rng.normal(size=(-(-shape[0] // 2), -(-shape[1] // 2)))
    layer = LearnedUpsampling(*shape, num_grids=2)
    out = layer([tf.constant(fine, tf.float32), tf.constant(coarse, tf.float32)]).numpy()
    assert out.shape == (*shape, 2)
    # The pre-concatenation filter starts as a Dirac, plus its residual: 2 y.
    np.testing.assert_allclose(out[..., 0], 2 * fine, atol=1e-5)
    np.testing.assert_allclose(out[..., 1], bicubic_upsample(coarse, shape), atol=1e-5)


def test_transposed_filter_reads_the_right_inputs():
    index, odd = transposed_taps(3, 6)
    # Output 2i reads i-2..i+1, output 2i+1 reads i-1..i+2, clamped to [0, 2].
    assert index[:, 0].tolist() == [0, 0, 0, 1] and index[:, 1].tolist() == [0, 0, 1, 2]
    assert index[:, 5].tolist() == [1, 2, 2, 2] and odd.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError):
        transposed_taps(3, 7)


def test_filters_are_symmetric_and_learnable():
    """Mirroring the grids mirrors the output, whatever the half filters are."""
    rng = np.random.default_rng(1)
    grids = [rng.normal(size=s) for s in [(16, 16), (8, 8), (4, 4)]]
    transposed = tf.constant(rng.normal(size=(2, 4)))
    prefilter = tf.constant(rng.normal(size=(2, 4)))
    out = learned_cascade([tf.constant(g) for g in grids], transposed, prefilter).numpy()
    mirrored = learned_cascade(
        [tf.constant(g[:, ::-1].copy()) for g in grids], transposed, prefilter
    ).numpy()
    np.testing.assert_allclose(mirrored, out[:, :, ::-1], atol=1e-9)
    model = C3Model(16, 16, num_grids=3, upsampling="learned")
    with tf.GradientTape() as tape:
        loss = model(
            tf.random.uniform((16, 16, 3)),
            mode="noise",
            temperature=0.3,
            kumaraswamy_a=2.0,
            seed=(1, 2),
        )["mse"]
    grads = tape.gradient(loss, [model.upsampling.transposed, model.upsampling.prefilter])
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)


def test_unknown_upsampling_is_an_error():
    with pytest.raises(ValueError, match="bilinear"):
        build_upsampling("nearest", 8, 8, 3)


def test_bilinear_models_are_unchanged():
    """C3's recipe keeps its networks and header: no upsampling parameters, flag off."""
    model = C3Model(16, 16, num_grids=3)
    assert len(model.network_layers) == 2
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    flags = arch.to_bytes()[-15]  # then shift, scale range (3 x f32) and the 2 steps
    assert not arch.learned_upsampling and flags == 2  # gelu_approximate only


def learned_model(seed=0, height=24, width=40):
    """A model with learned upsampling whose filters moved away from their start."""
    tf.keras.utils.set_random_seed(seed)
    model = C3Model(height, width, num_grids=4, upsampling="learned")
    rng = np.random.default_rng(seed)
    for v in model.latent_grids.trainable_variables:
        v.assign(rng.normal(scale=3.0, size=v.shape).astype(np.float32))
    up = model.upsampling
    up.transposed.assign(up.transposed + rng.normal(scale=0.05, size=up.transposed.shape))
    up.prefilter.assign(up.prefilter + rng.normal(scale=0.05, size=up.prefilter.shape))
    model.set_network_integers(model.network_integers(*STEPS), *STEPS)
    return model


UPSAMPLING_STEP = 2.0**-11


def test_fixed_point_upsampling_follows_the_float_model():
    model = learned_model()
    steps = (*STEPS, UPSAMPLING_STEP)
    model.set_network_integers(model.network_integers(*steps), *steps)
    arch = C3Architecture.from_model_config(model.get_config(), *steps)
    assert arch.learned_upsampling and arch.upsampling_bits == 11
    assert C3Architecture.from_bytes(arch.to_bytes()) == arch
    parameters = prepare_parameters(arch, model.network_integers(*steps))
    symbols = model.symbols()
    fixed = IntegerC3(arch, parameters).upsample([tf.constant(s) for s in symbols]).numpy()
    grids = [tf.constant(s * model.q_step, tf.float32) for s in symbols]
    float_out = model.upsampling(grids).numpy() / model.q_step  # symbol units
    # Rounded to 2^-16 after each of the 1-D passes of up to 3 levels.
    np.testing.assert_allclose(fixed / 2.0**16, float_out, atol=1e-3, rtol=1e-4)


def test_learned_upsampling_file_decodes_the_same_in_another_process(tmp_path):
    model = learned_model(seed=2)
    steps = (*STEPS, UPSAMPLING_STEP)
    model.set_network_integers(model.network_integers(*steps), *steps)
    encoded = c3_codec.encode(model, *steps)
    here = c3_codec.decode(encoded.data)
    assert here.arch.learned_upsampling
    assert all(np.array_equal(a, b) for a, b in zip(here.symbols, model.symbols(), strict=True))
    path = tmp_path / "learned.c3"
    path.write_bytes(encoded.data)
    out = run_script("codec.py", "decode", "-i", str(path), "-o", str(tmp_path / "d.png"))
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), here.image)
