import math

import numpy as np

from models.c3 import rate


def independent_laplace_bits(y, mu, b):
    """-log2(F(y + 1/2) - F(y - 1/2)) of a Laplace(mu, b), in float64."""

    def cdf(x):
        z = (x - mu) / b
        return np.where(z < 0, 0.5 * np.exp(z), 1.0 - 0.5 * np.exp(-z))

    with np.errstate(divide="ignore"):
        return -np.log2(cdf(y + 0.5) - cdf(y - 0.5))


def test_latent_bits_equal_minus_log2_of_discretised_laplace():
    rng = np.random.default_rng(0)
    q_step = 0.4
    symbols = rng.integers(-6, 7, size=500).astype(np.float32)
    loc = rng.normal(0, 1, size=500).astype(np.float32)  # value units
    scale = rng.uniform(0.05, 3.0, size=500).astype(np.float32)
    bits = rate.latent_bits(symbols, loc, scale, q_step).numpy()
    expected = independent_laplace_bits(
        symbols.astype(np.float64), loc / q_step, scale.astype(np.float64) / q_step
    )
    expected = np.minimum(expected, 16.0)
    np.testing.assert_allclose(bits, expected, rtol=2e-4, atol=2e-4)


def test_latent_bits_are_capped_at_16():
    bits = rate.latent_bits(
        np.array([100.0], np.float32), np.zeros(1, np.float32), np.full(1, 0.01, np.float32), 0.4
    ).numpy()
    assert bits[0] == 16.0


def test_parameter_bits_match_c3_estimate():
    rng = np.random.default_rng(1)
    q = np.round(rng.laplace(0, 4, size=300)).astype(np.int64)
    scale = max(np.std(q) / math.sqrt(2), 1e-3)
    expected = np.minimum(independent_laplace_bits(q.astype(np.float64), 0.0, scale), 32).sum()
    assert abs(rate.parameter_bits(q) - expected) < 1e-3 * expected
    assert rate.parameter_bits(np.zeros(10)) < 1.0  # all-zero arrays are nearly free
