import numpy as np
import pytest
import tensorflow as tf

from models.c3 import quantization
from models.c3.latents import LatentGrids, grid_shapes
from models.c3.model import C3Model
from models.c3.synthesis import Synthesis, edge_pad
from models.c3.upsampling import Upsampling, bilinear_resize


def test_grid_shapes_for_odd_sizes():
    assert grid_shapes(33, 47, 7) == [(33, 47), (17, 24), (9, 12), (5, 6), (3, 3), (2, 2), (1, 1)]
    grids = LatentGrids(33, 47).continuous_symbols()
    assert [tuple(g.shape) for g in grids] == grid_shapes(33, 47, 7)
    assert all(float(tf.reduce_max(tf.abs(g))) == 0.0 for g in grids)  # zero init


def test_latent_gain_and_q_step():
    layer = LatentGrids(8, 8, num_grids=3, q_step=0.4)
    layer.assign_symbols([np.full(s, 3) for s in layer.shapes])
    for g in layer.continuous_symbols():
        np.testing.assert_allclose(g.numpy(), 3.0, rtol=1e-6)
    # The parameter of grid k is symbol * q_step / 2^k.
    np.testing.assert_allclose(layer.grid_parameters[2].numpy(), 3 * 0.4 / 4, rtol=1e-6)
    # Cool-chic 5's one gain for all grids: 16 symbols per unit of parameter.
    uniform = LatentGrids(8, 8, num_grids=3, q_step=0.4, gain_factor=1.0, latent_gain=6.4)
    uniform.assign_symbols([np.full(s, 3) for s in uniform.shapes])
    for p, g in zip(uniform.grid_parameters, uniform.continuous_symbols(), strict=True):
        np.testing.assert_allclose(p.numpy(), 3 / 16, rtol=1e-6)
        np.testing.assert_allclose(g.numpy(), 3.0, rtol=1e-6)
    with pytest.raises(ValueError, match="latent_gain"):
        LatentGrids(8, 8, latent_gain=0.0)


@pytest.mark.parametrize("size,grid", [((33, 47), (17, 24)), ((32, 48), (4, 6)), ((7, 5), (1, 1))])
def test_bilinear_resize_matches_tf_image_resize(size, grid):
    g = tf.constant(np.random.default_rng(0).normal(size=grid).astype(np.float32))
    ours = bilinear_resize(g, size).numpy()
    reference = tf.image.resize(g[None, :, :, None], size, method="bilinear")[0, :, :, 0].numpy()
    assert ours.shape == size
    np.testing.assert_allclose(ours, reference, atol=5e-5)


def test_upsampling_stacks_grids_at_image_size_for_odd_sizes():
    grids = LatentGrids(33, 47).continuous_symbols()
    assert Upsampling(33, 47)(grids).shape == (33, 47, 7)


def test_synthesis_residuals_start_as_identity_and_output_is_clipped():
    layer = Synthesis(num_grids=7, hidden=(18, 18))
    layer.build((None, None, 7))
    for conv in layer.residual_convs:
        assert not np.any(conv.kernel.numpy()) and not np.any(conv.bias.numpy())
    out = layer(tf.constant(np.random.default_rng(0).normal(0, 50, (9, 11, 7)), tf.float32))
    assert out.shape == (9, 11, 3)
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0


def test_edge_pad_replicates_borders():
    x = tf.reshape(tf.range(6, dtype=tf.float32), (2, 3, 1))
    padded = edge_pad(x, 2)[..., 0].numpy()
    assert padded.shape == (6, 7)
    assert padded[0, 0] == 0 and padded[-1, -1] == 5 and padded[0, -1] == 2


def test_macs_per_pixel_reproduce_c3():
    assert C3Model(512, 768).macs_per_pixel() == {
        "context_model": 1056,
        "inter_grid": 0,
        "synthesis": 666,
        "upsampling": 48,
        "total": 1770,
    }
    clic = C3Model(512, 768, synthesis_hidden=(24, 24), arm_hidden=(24, 24), use_prev_grid=True)
    assert clic.macs_per_pixel()["total"] == 2925
    coolchic = C3Model(
        512,
        768,
        synthesis_hidden=(12, 12),
        num_residual_layers=0,
        arm_hidden=(12, 12),
        context_rows_cols=2,
    )
    assert coolchic.macs_per_pixel()["total"] - 48 < 700  # COOL-CHIC v1: < 700 without upsampling


def test_kumaraswamy_noise_has_mode_half_and_bounded_support():
    import tensorflow_probability as tfp

    for a in [1.0, 1.5, 2.0]:
        b = float(quantization.kumaraswamy_b(tf.constant(a)))
        if a > 1:
            mode = float(tfp.distributions.Kumaraswamy(a, b).mode())
            assert abs(mode - 0.5) < 1e-5
        noise = quantization.kumaraswamy_noise((20000,), a, tf.constant([1, 2])).numpy()
        assert noise.min() >= -0.5 and noise.max() <= 0.5
        assert abs(np.median(noise)) < 0.05
    uniform = quantization.kumaraswamy_noise((20000,), 1.0, tf.constant([1, 2])).numpy()
    assert abs(uniform.std() - np.sqrt(1 / 12)) < 0.01


def test_straight_through_rounds_forward_and_passes_soft_round_gradient():
    y = tf.Variable([0.2, 0.49, 1.7, -2.51])
    with tf.GradientTape() as tape:
        out = quantization.ste_soft_round(y, 0.3)
    np.testing.assert_array_equal(out.numpy(), np.round(y.numpy()))
    grad = tape.gradient(out, y).numpy()
    assert np.all(grad > 0)  # soft-round gradient, not zero


def test_noise_quantisation_stays_near_the_input():
    y = tf.constant(np.linspace(-3, 3, 101), tf.float32)
    out = quantization.noisy_soft_round(y, 0.3, 2.0, tf.constant([0, 0])).numpy()
    assert np.all(np.abs(out - y.numpy()) <= 1.0)


def test_gaussian_proxy_has_the_noise_it_is_given_and_tends_to_rounding():
    """Cool-chic 5's proxy s_T(s_T(y) + n): with tiny noise and temperature it rounds;
    its spread around round(y) grows with the noise std."""
    y = tf.constant(np.linspace(-3.3, 3.3, 4001), tf.float32)
    seed = tf.constant([3, 4])
    near = quantization.gaussian_soft_round(y, 1e-3, 1e-4, seed).numpy()
    np.testing.assert_allclose(near, np.round(y.numpy()), atol=1e-3)
    spread = [
        np.std(quantization.gaussian_soft_round(y, 0.35, std, seed).numpy() - y.numpy())
        for std in (0.05, 0.22)
    ]
    assert 0 < spread[0] < spread[1] < 0.5
    grad_y = tf.Variable(y)
    with tf.GradientTape() as tape:
        out = quantization.gaussian_soft_round(grad_y, 0.35, 0.22, seed)
    assert np.all(np.isfinite(tape.gradient(out, grad_y).numpy()))


def test_model_rejects_unknown_quantisation_mode():
    with pytest.raises(ValueError, match="Unknown quantisation mode"):
        C3Model(8, 8).quantized_symbols("floor")


def test_model_forward_returns_reconstruction_bits_and_distortion():
    model = C3Model(33, 47)
    out = model(tf.zeros((33, 47, 3)), "round")
    assert out["reconstruction"].shape == (33, 47, 3)
    assert out["bits_per_grid"].shape == (7,)
    assert float(out["mse"]) >= 0.0


def test_gelu_tanh_matches_tensorflow_in_value_and_gradient():
    from models.c3.mlp import gelu_tanh

    x = tf.constant(np.linspace(-8, 8, 2001), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = gelu_tanh(x)
        reference = tf.nn.gelu(x, approximate=True)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=2e-6)
    np.testing.assert_allclose(
        tape.gradient(ours, x).numpy(), tape.gradient(reference, x).numpy(), atol=2e-5
    )
