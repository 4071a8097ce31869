"""SOAP's preconditioner: eigenbases of the gradient statistics, rotations that invert,
and a C3 + SOAP fit (configs/c3_plus.py) that learns and writes a C3 file."""

import numpy as np
import pytest
import tensorflow as tf

from models.c3.soap import Preconditioner


def test_rotation_is_orthogonal_and_inverts():
    pre = Preconditioner((3, 3, 4, 5), beta=0.0)
    g = tf.random.stateless_normal((3, 3, 4, 5), seed=[1, 2])
    pre.accumulate(g)
    pre.refresh(tf.constant(True))
    for q in pre.bases:
        np.testing.assert_allclose(q.numpy().T @ q.numpy(), np.eye(q.shape[0]), atol=1e-5)
    x = tf.random.stateless_normal((3, 3, 4, 5), seed=[3, 4])
    np.testing.assert_allclose(pre.rotate(pre.rotate(x), back=True).numpy(), x.numpy(), atol=1e-5)
    assert float(tf.norm(pre.rotate(x))) == pytest.approx(float(tf.norm(x)), rel=1e-5)


def test_bases_diagonalise_the_statistics_and_power_iteration_keeps_them():
    pre = Preconditioner((6, 4), beta=0.5)
    for seed in range(3):
        pre.accumulate(tf.random.stateless_normal((6, 4), seed=[seed, 0]))
    pre.refresh(tf.constant(True))
    for s, q in zip(pre.stats, pre.bases, strict=True):
        d = q.numpy().T @ s.numpy() @ q.numpy()
        assert np.abs(d - np.diag(np.diag(d))).max() < 1e-4 * np.abs(d).max()
    before = [q.numpy().copy() for q in pre.bases]
    pre.refresh(tf.constant(False))  # a power step from an eigenbasis stays one (up to sign)
    for q, old in zip(pre.bases, before, strict=True):
        np.testing.assert_allclose(np.abs(q.numpy().T @ old), np.eye(old.shape[0]), atol=1e-3)


def test_power_steps_keep_a_low_rank_basis_and_its_second_moment_in_place():
    """Statistics of rank 2 (what a few gradients leave): refreshed at every step, the
    basis keeps the two large directions first and still; the null space (S q = 0 up to
    rounding) must not be orthogonalised first, or it scrambles the basis."""
    pre = Preconditioner((6, 4), beta=0.0)
    u = tf.random.stateless_normal((6, 2), seed=[5, 6])
    w = tf.random.stateless_normal((2, 4), seed=[7, 8])
    pre.accumulate(tf.matmul(u, w))  # rank 2 along both axes
    v = tf.Variable(tf.reshape(tf.range(24.0), (6, 4)))
    pre.refresh(tf.constant(True), v)
    np.testing.assert_array_equal(v.numpy(), np.arange(24.0).reshape(6, 4))  # exact: kept
    first = [q.numpy()[:, :2].copy() for q in pre.bases]
    for _ in range(20):
        pre.refresh(tf.constant(False), v)
    for q, top in zip(pre.bases, first, strict=True):
        np.testing.assert_allclose(np.abs(q.numpy()[:, :2].T @ top), np.eye(2), atol=1e-3)
    # The large directions' second moments stay where they were (the null space's order
    # among itself is rounding noise, and so is its second moment).
    np.testing.assert_array_equal(v.numpy()[:2, :2], [[0.0, 1.0], [4.0, 5.0]])


def test_a_power_step_sorts_the_basis_by_eigenvalue_and_carries_the_second_moment():
    pre = Preconditioner((3, 2), beta=0.0)
    pre.accumulate(tf.constant([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]) * [[1.0], [2.0], [3.0]])
    # The statistics are diag(1, 16, 0) along axis 0 and diag(1, 16) along axis 1: the
    # identity bases, ascending in places, are re-sorted to (e1, e0, e2) and (e1, e0), and
    # the second moment's rows and columns go with them.
    v = tf.Variable([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    pre.refresh(tf.constant(False), v)
    np.testing.assert_allclose(np.abs(pre.bases[0].numpy()), np.eye(3)[:, [1, 0, 2]], atol=1e-6)
    np.testing.assert_allclose(np.abs(pre.bases[1].numpy()), np.eye(2)[:, [1, 0]], atol=1e-6)
    np.testing.assert_array_equal(v.numpy(), [[4.0, 3.0], [2.0, 1.0], [6.0, 5.0]])


def test_c3_plus_fits_and_its_file_decodes_like_any_c3_file():
    from configs import c3_plus
    from pipelines.per_image import C3Codec
    from tests.helpers import smooth_image

    config = c3_plus.get_config()
    assert config.fit.optimizer == "soap"
    config.fit.num_noise_steps, config.fit.max_ste_steps, config.fit.log_every = 40, 4, 20
    config.fit.weight_steps = config.fit.bias_steps = (2.0**-8,)
    # The whole c3_plus path at its smallest: one upsampling step, RDOQ moves of one step
    # (tests/test_rdoq.py checks what RDOQ does).
    config.fit.upsampling_steps, config.fit.rdoq_max_delta = (2.0**-8,), 1
    codec = C3Codec(config, jit=False)
    image = smooth_image(24, 32, seed=2)
    fitter = codec.fitter(24, 32)
    assert sum(pre is not None for pre in fitter.soap) == len(
        [v for v in fitter.model.network_variables if len(v.shape) >= 2]
    )  # a preconditioner per network weight tensor, none for biases and latents
    fitter.reset(image / 255.0, config.model.lmbda, config.seed)
    before = fitter._hard_loss()
    encoding = codec.fit_and_encode(image)
    np.testing.assert_array_equal(codec.decode(encoding.encoded.data), encoding.decoded.image)
    assert encoding.fit.loss < 0.5 * before and encoding.fit.psnr > 10  # SOAP learns


def test_soap_rotates_each_gradient_by_the_basis_of_the_steps_before_it():
    """SOAP's reference order (C3Fitter._adam_update): step 1 only sets up the
    statistics and bases (no moments, no update); at step 2 the gradient is rotated by
    step 1's basis and only then accumulated, so the update is Adam's first step (the
    rotated gradient's sign) in that basis, plus the decoupled weight decay."""
    from configs import c3_plus
    from pipelines.per_image import C3Codec
    from tests.helpers import smooth_image

    config = c3_plus.get_config()
    config.fit.grad_clip = 1e9  # no clipping: the update is the gradient's alone
    config.fit.soap_precondition_every = 1
    codec = C3Codec(config, jit=False)
    fitter = codec.fitter(16, 16)
    fitter.reset(smooth_image(16, 16, seed=1) / 255.0, config.model.lmbda, config.seed)
    i = next(k for k, pre in enumerate(fitter.soap) if pre is not None)
    pre, p = fitter.soap[i], fitter.params[i]
    rng = np.random.default_rng(0)
    grads = lambda: [tf.constant(rng.normal(size=v.shape), tf.float32) for v in fitter.params]  # noqa: E731
    norm, lr = tf.constant(1.0), 1e-2

    p0 = p.numpy()
    first = grads()
    fitter._adam_update(first, norm, lr)
    np.testing.assert_array_equal(p.numpy(), p0)
    assert not fitter.adam_m[i].numpy().any() and not fitter.adam_v[i].numpy().any()
    assert len(p.shape) == 2  # a dense kernel: axis 0's statistics are (1 - beta) g g^T
    g1 = first[i].numpy()
    np.testing.assert_allclose(
        pre.stats[0].numpy(), (1 - pre.beta) * g1 @ g1.T, rtol=1e-5, atol=1e-6
    )

    bases = [q.numpy() for q in pre.bases]
    second = grads()
    rotated = pre.rotate(second[i]).numpy()  # by step 1's bases
    fitter._adam_update(second, norm, lr)
    for q, before in zip(pre.bases, bases, strict=True):  # refreshed after the update
        assert not np.allclose(q.numpy(), before)
    for q, before in zip(pre.bases, bases, strict=True):
        q.assign(before)
    expected = pre.rotate(
        tf.constant(rotated / (np.abs(rotated) + config.fit.soap_eps)), back=True
    ).numpy()
    expected = p0 - lr * (expected + config.fit.soap_weight_decay * p0)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-4, atol=1e-6)
