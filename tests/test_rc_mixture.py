"""RC's logistic mixture: a distribution over [0, 255], the same in integers, exact files."""

import os

import numpy as np
import pytest
import tensorflow as tf

from coding import fixed_point as fp
from coding.container import Container, parse
from coding.range_coding import Coder
from coding.rc import codec as rc_codec
from coding.rc import mixture as coder
from common.errors import BitstreamError
from models import registry
from models.rc import mixture
from tests.helpers import ROOT
from tests.test_rc import assert_decodes_elsewhere, noisy_image, tiny_config

K = 5
ONE = 2**fp.ACTIVATION_BITS
WEIGHTS = os.path.join(ROOT, "tests", "data", "rc_mixture_tiny_weights.npz")
GOLDEN_FILE = os.path.join(ROOT, "tests", "data", "golden_rc_mixture.lz")


def golden_model():
    """A tiny mixture network (K = 5) with the weights of tests/data (random tail)."""
    model = registry.build_model(tiny_config(mixtures=K).model)
    stored = np.load(WEIGHTS)
    for i, variable in enumerate(model.weights):
        variable.assign(stored[f"w{i}"])
    return model


def random_outputs(n: int, seed: int, mean_spread=3.0, ln_scale=(-1.0, 2.5)) -> np.ndarray:
    """Float network outputs (n, 12 K) with means within +-mean_spread of x_l, ln-scales
    in `ln_scale`, logits in +-2 and couplings in +-0.5."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 4, 3, K))
    out[:, 0] = rng.uniform(-mean_spread, mean_spread, (n, 3, K))
    out[:, 1] = rng.uniform(*ln_scale, (n, 3, K)) - mixture.LN_SCALE_SHIFT
    out[:, 2] = rng.uniform(-2, 2, (n, 3, K))
    out[:, 3] = rng.uniform(-0.5, 0.5, (n, 3, K)) / mixture.COUPLING_SCALE
    return out.reshape(n, 12 * K)


def as_fixed(outputs: np.ndarray) -> np.ndarray:
    """The float outputs on the fixed-point network's grid (integers at 2^-12)."""
    return np.round(outputs * ONE).astype(np.int64)


def pixels(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x_l = rng.integers(0, 256, (n, 3))
    x = np.clip(x_l + rng.integers(-6, 7, (n, 3)), 0, 255)
    return x_l, x


def test_the_mixture_is_a_distribution_over_the_values_x_l_allows():
    """Truncated support: the 256 values' probabilities sum to 1 whatever the means
    (the mass beyond an end goes to the end value), near 0 and 255 too."""
    n = 6
    out = random_outputs(n, 0, mean_spread=40.0, ln_scale=(-3.0, 4.0))
    x_l = np.array([[0, 255, 3], [250, 5, 128], [128, 128, 128]] * 2, np.float32)
    values = np.arange(256, dtype=np.float32)
    for c in range(3):  # channel c takes every value; the others stay at x_l (r = 0)
        x = np.broadcast_to(x_l, (256, n, 3)).copy()
        x[:, :, c] = values[:, None]
        lp = mixture.log_probabilities(
            tf.constant(np.broadcast_to(out, (256, n, 12 * K)), tf.float32),
            tf.constant(np.broadcast_to(x_l, (256, n, 3))),
            tf.constant(x),
            K,
        ).numpy()
        totals = np.exp(lp[:, :, c].astype(np.float64)).sum(axis=0)  # over the 256 values
        np.testing.assert_allclose(totals, 1.0, atol=2e-4)


def test_the_integer_cdf_codes_what_the_float_mixture_predicts():
    """The coder's bits (exact interval widths of its integer CDFs) are the float
    model's to the tables' resolution (ln-scales to 1/16, logits to 1/16)."""
    n = 4000
    out = random_outputs(n, 1)
    x_l, x = pixels(n, 2)
    float_bits = mixture.bits(
        tf.constant(out, tf.float32), tf.constant(x_l, tf.float32), tf.constant(x, tf.float32), K
    ).numpy()
    fixed = as_fixed(out)
    for c in range(3):
        params = coder.channel_parameters(fixed, x_l, x - x_l, c, K)
        lower, upper = coder.value_intervals(*params, x[:, c])
        bits = coder.PRECISION - np.log2((upper - lower).astype(np.float64))
        assert abs(bits.mean() - float_bits[:, c].mean()) < 0.02 * float_bits[:, c].mean()
        assert np.abs(bits - float_bits[:, c]).mean() < 0.05


def test_the_windowed_cdfs_are_the_full_ones():
    """`cdf_rows` computes each row only inside the window where some component is not
    saturated; the rows equal the CDF computed at all 255 edges, for narrow, wide and
    far-off distributions (means beyond [0, 255] included)."""
    n = 3000
    rng = np.random.default_rng(3)
    out = np.concatenate(
        [
            random_outputs(n, 4, 1.0, (-4.0, 0.0)),
            random_outputs(n, 5, 3.0, (0.0, 6.0)),
            random_outputs(n, 6, 300.0, (-2.0, 3.0)),
        ]
    )
    x_l = rng.integers(0, 256, (3 * n, 3))
    residuals = np.clip(x_l + rng.integers(-40, 41, x_l.shape), 0, 255) - x_l
    for c in range(3):
        params = coder.channel_parameters(as_fixed(out), x_l, residuals, c, K, tau=c - 1)
        rows = coder.cdf_rows(*params)
        i = np.arange(1, 256)
        edges = coder._edge(np.broadcast_to(i, (3 * n, 255)))
        np.testing.assert_array_equal(rows[:, 1:256], i + coder._edge_cdf(*params, edges))
        assert np.all(np.diff(rows, axis=1) >= 1) and np.all(rows[:, -1] == 2**16)
        lower, upper = coder.value_intervals(*params, x_l[:, c] + residuals[:, c])
        at = (x_l[:, c] + residuals[:, c])[:, None]
        np.testing.assert_array_equal(lower, np.take_along_axis(rows, at, 1)[:, 0])
        np.testing.assert_array_equal(upper, np.take_along_axis(rows, at + 1, 1)[:, 0])


def test_the_encoders_short_rows_code_the_same_bytes_as_the_whole_cdfs():
    """The encoder codes each value with a 3-symbol row holding its interval; the range
    coder writes the same string as with the value's whole CDF (which the decoder uses)."""
    n = 5000
    x_l, x = pixels(n, 7)
    params = coder.channel_parameters(as_fixed(random_outputs(n, 8)), x_l, x - x_l, 1, K)
    whole = Coder.from_matrix(coder.cdf_rows(*params), 16).encode(np.arange(n), x[:, 1])
    rows, symbols = coder.interval_rows(*coder.value_intervals(*params, x[:, 1]))
    assert Coder.from_matrix(rows, 16).encode(np.arange(n), symbols) == whole
    # Values 0 and 255 (the first and last intervals) too.
    ends = np.array([0, 255] * 50)
    lower, upper = coder.value_intervals(*(p[:100] for p in params), ends)
    rows, symbols = coder.interval_rows(lower, upper)
    whole = Coder.from_matrix(coder.cdf_rows(*(p[:100] for p in params)), 16)
    assert Coder.from_matrix(rows, 16).encode(np.arange(100), symbols) == whole.encode(
        np.arange(100), ends
    )


def test_green_and_blue_means_follow_the_residuals_of_the_channels_before():
    """mu_G,k = x_l,G + d + a_GR,k r_R and mu_B,k = x_l,B + d + a_BR,k r_R + a_BG,k r_G,
    in the float model and in the integer coder alike."""
    out = np.zeros((1, 4, 3, K))
    out[0, 3, 0] = 0.5 / mixture.COUPLING_SCALE  # a_GR
    out[0, 3, 1] = 0.25 / mixture.COUPLING_SCALE  # a_BR
    out[0, 3, 2] = -1.0 / mixture.COUPLING_SCALE  # a_BG
    out = out.reshape(1, 12 * K)
    x_l = np.array([[100, 50, 200]])
    x = np.array([[110, 54, 190]])  # r = (10, 4, -10)
    mu = mixture.component_means(
        tf.constant(out, tf.float32), tf.constant(x_l, tf.float32), tf.constant(x, tf.float32), K
    ).numpy()[0]
    np.testing.assert_allclose(mu[:, 0], [100, 50 + 5, 200 + 2.5 - 4], atol=1e-4)
    for c, want in enumerate([100, 55, 198.5]):
        int_mu = coder.channel_parameters(as_fixed(out), x_l, x - x_l, c, K)[0]
        np.testing.assert_array_equal(int_mu[0], round(want * ONE))


@pytest.fixture(scope="module")
def coded(codec_tools):
    image = noisy_image(37, 53, seed=3)
    codec = rc_codec.RcCodec(golden_model(), tiny_config(mixtures=K))
    return image, codec, codec.compress(image)


def test_a_mixture_file_decodes_to_the_original(coded):
    image, codec, encoded = coded
    np.testing.assert_array_equal(codec.decode(encoded.data), image)
    sections = parse(encoded.data).sections
    assert len(sections) == 4 and len(sections[0]) == encoded.bytes_lossy
    assert sum(map(len, sections[1:])) == encoded.bytes_residual


def test_images_beyond_one_chunk_are_coded_in_several_strings(codec_tools, monkeypatch):
    monkeypatch.setattr(coder, "CHUNK", 500)
    image = noisy_image(30, 41, seed=6)  # 1230 pixels: 3 strings per channel
    codec = rc_codec.RcCodec(golden_model(), tiny_config(mixtures=K))
    encoded = codec.compress(image, qualities=(30,))
    assert len(parse(encoded.data).sections) == 1 + 3 * 3
    np.testing.assert_array_equal(codec.decode(encoded.data), image)


def test_a_mixture_file_decodes_exactly_in_other_processes_threads_and_xla(coded, tmp_path):
    image, _, encoded = coded
    assert_decodes_elsewhere(encoded.data, image, tmp_path, "tests.test_rc_mixture", K)


def test_a_damaged_mixture_section_is_an_error(coded):
    _, codec, encoded = coded
    parsed = parse(encoded.data)
    r, g, b = parsed.sections[1:]
    for sections in [(r, r, b), (r, g)]:  # wrong strings (valid CRCs), one missing
        data = Container(parsed.codec, parsed.header, (parsed.sections[0], *sections)).to_bytes()
        with pytest.raises(BitstreamError):
            codec.decode(data)
    laplace = rc_codec.RcCodec(registry.build_model(tiny_config().model), tiny_config())
    with pytest.raises(BitstreamError, match="another residual network"):
        laplace.decode(encoded.data)


def test_tau_corrects_scales_predicted_too_small():
    """Scales predicted 2x too small: tau raises them, and the coded bits fall."""
    n = 20000
    rng = np.random.default_rng(9)
    x_l = np.full((n, 3), 128)
    x = np.clip(128 + rng.logistic(0, 2.0, (n, 3)).round(), 0, 255).astype(np.int64)
    out = np.zeros((n, 4, 3, K))
    out[:, 1] = np.log(1.0) - mixture.LN_SCALE_SHIFT
    fixed = as_fixed(out.reshape(n, 12 * K))
    tau = rc_codec.search_mixture_tau(fixed, x_l, x - x_l, K)
    assert all(abs(t * rc_codec.TAU_UNIT - np.log(2.0)) <= 2 * rc_codec.TAU_UNIT for t in tau), tau
    before = sum(coder.channel_bits(fixed, x_l, x - x_l, c, K, 0) for c in range(3))
    after = sum(coder.channel_bits(fixed, x_l, x - x_l, c, K, tau[c]) for c in range(3))
    assert after < 0.9 * before


def test_the_golden_mixture_file_decodes_to_its_image(codec_tools):
    """The format pinned: a file of the first mixture encoder (tiny network of
    tests/data/rc_mixture_tiny_weights.npz, HEVC QP 22) decodes to exactly its image."""
    with open(GOLDEN_FILE, "rb") as f:
        data = f.read()
    codec = rc_codec.RcCodec(golden_model(), tiny_config(mixtures=K))
    np.testing.assert_array_equal(codec.decode(data), noisy_image(24, 32, seed=9))


def test_the_fused_training_loss_is_the_mixtures_bits():
    """`fused_bits` (XLA, for training) gives the values and gradients of `bits`."""
    out = tf.constant(
        random_outputs(300, 12, 50.0, (-3.0, 4.0)).reshape(10, 30, 12 * K), tf.float32
    )
    x_l, x = (tf.constant(v.reshape(10, 30, 3), tf.float32) for v in pixels(300, 13))
    results = []
    for fn in (mixture.bits, mixture.fused_bits):
        with tf.GradientTape() as tape:
            tape.watch(out)
            loss = tf.reduce_sum(fn(out, x_l, x, K))
        results.append((loss.numpy(), tape.gradient(loss, out).numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-3, atol=1e-5)
