"""Fixed-point arithmetic of the decoder: exact, table GELU close to the float one."""

import numpy as np
import pytest
import tensorflow as tf

from coding import fixed_point as fp


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_table_matches_float_gelu(approximate):
    x = np.linspace(-12, 12, 20001)
    table = tf.constant(fp.gelu_lookup_table(approximate))
    ours = fp.gelu(tf.constant(np.round(x * 2**fp.ACTIVATION_BITS)), table).numpy()
    reference = tf.nn.gelu(tf.constant(x), approximate=approximate).numpy()
    # Input rounding (2^-13 * slope 1.13) + output rounding (2^-13) + interpolation.
    np.testing.assert_allclose(ours / 2**fp.ACTIVATION_BITS, reference, atol=4e-4)
    assert np.all(ours == np.round(ours))


def test_round_shift_rounds_half_up():
    x = tf.constant([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0], tf.float64)
    np.testing.assert_array_equal(fp.round_shift(x, 1).numpy(), [-1, -1, 0, 0, 1, 1, 2])


def test_step_bits():
    assert fp.step_bits(2.0**-7, "w") == 7
    with pytest.raises(ValueError, match="power of two"):
        fp.step_bits(1e-3, "w")


def test_layer_limits():
    fp.layer_parameters(np.ones((4, 2)), np.zeros(2), 8, 8, "ok")
    with pytest.raises(ValueError, match="exceeds"):
        fp.layer_parameters(np.full((4, 2), fp.WEIGHT_LIMIT + 1), np.zeros(2), 8, 8, "big")
    with pytest.raises(ValueError, match="finer"):
        fp.layer_parameters(np.ones((4, 2)), np.zeros(2), 0, fp.ACTIVATION_BITS + 1, "bias")


def test_dense_layer_is_exact_whatever_the_batch():
    """Integer-valued float64 sums are exact: any batch split gives the same integers."""
    rng = np.random.default_rng(0)
    kernel, bias = fp.layer_parameters(
        rng.integers(-(2**18), 2**18, (24, 18)), rng.integers(-(2**18), 2**18, 18), 14, 10, "l"
    )
    layer = fp.FixedPointLayer(tf.constant(kernel), tf.constant(bias), 2.0**-14)
    x = rng.integers(-fp.ACTIVATION_LIMIT, fp.ACTIVATION_LIMIT, (1000, 24)).astype(np.float64)
    whole = layer.dense(tf.constant(x)).numpy()
    parts = [layer.dense(tf.constant(x[i : i + 7])).numpy() for i in range(0, 1000, 7)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    # The same layer in Python integers: (x @ W + b + 2^13) // 2^14, clamped.
    exact = x.astype(np.int64).astype(object) @ kernel.astype(np.int64).astype(object)
    expected = (exact + bias.astype(np.int64) + 2**13) // 2**14
    limit = fp.ACTIVATION_LIMIT
    np.testing.assert_array_equal(whole, np.clip(expected.astype(np.float64), -limit, limit))
