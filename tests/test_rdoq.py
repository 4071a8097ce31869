"""RDOQ of C3's network integers (Cool-chic 5, `models.c3.rdoq`): measured on real files."""

import numpy as np
import pytest

from coding import weights
from coding.c3 import codec as c3_codec
from common.images import to_float
from models.c3.model import C3Model
from models.c3.rdoq import NetworkRDOQ
from pipelines.per_image import encode_and_verify, make_fitter
from tests.helpers import smooth_image, tiny_fit_config

LMBDA = 2e-3


def _small_model():
    # Few parameters, so that the greedy pass (two or more evaluations per integer)
    # takes seconds; the full models behave the same way.
    return C3Model(32, 48, arm_hidden=(6,), synthesis_hidden=(6,), num_residual_layers=1)


def _file_loss(image: np.ndarray, data: bytes) -> float:
    """MSE of the decoded 8-bit image on [0, 1] + lambda x bpp of the file."""
    decoded = c3_codec.decode(data).image
    mse = np.mean((decoded / 255.0 - image / 255.0) ** 2)
    return mse + LMBDA * 8 * len(data) / (image.shape[0] * image.shape[1])


def _quantize(fitter, float_params, rdoq: bool):
    for v, value in zip(fitter.model.network_variables, float_params, strict=True):
        v.assign(value)
    fitter.config.rdoq = rdoq
    quantized = fitter.quantize_networks()
    integers = fitter.model.network_integers(*quantized.steps)
    encoded = c3_codec.encode(fitter.model, *quantized.steps)
    return quantized, integers, encoded, fitter.rdoq_report


@pytest.fixture(scope="module")
def fitted():
    """A fitter after 60 stage-1 steps, its networks quantised without RDOQ, then with
    (the model left at the latter), and the image."""
    image = smooth_image(32, 48, seed=4)
    config = tiny_fit_config()
    config.weight_steps = config.bias_steps = tuple(2.0**-k for k in range(5, 12))
    fitter = make_fitter(_small_model(), config)
    fitter.reset(to_float(image), lmbda=LMBDA, seed=1)
    fitter._run_chunks("noise", 60)
    float_params = [v.numpy() for v in fitter.model.network_variables]
    plain = _quantize(fitter, float_params, rdoq=False)
    refined = _quantize(fitter, float_params, rdoq=True)
    return fitter, plain, refined, image


def test_rdoq_lowers_the_rd_loss_of_the_file(fitted):
    fitter, plain, refined, image = fitted
    plain, plain_integers, plain_file, no_report = plain
    refined, integers, encoded, report = refined
    assert no_report is None
    assert report.changed > 0 and report.evaluations >= 2 * sum(q.size for q in integers)
    assert report.loss_after < report.loss_before
    # The steps are the search's; only integers moved, each by at most max_delta.
    assert refined.steps == plain.steps
    for a, b in zip(integers, plain_integers, strict=True):
        assert np.abs(a - b).max() <= fitter.config.rdoq_max_delta
    changed = sum(int(np.sum(a != b)) for a, b in zip(integers, plain_integers, strict=True))
    assert changed == report.changed
    # The file agrees: fewer network bits, and a lower RD loss measured from the file.
    assert encoded.bits_networks < plain_file.bits_networks
    assert report.network_bits_after < report.network_bits_before
    assert _file_loss(image, encoded.data) < _file_loss(image, plain_file.data)
    # The report's network bits are the file's code lengths (the section adds one code
    # byte per tensor, a length and padding).
    overhead = encoded.bits_networks - report.network_bits_after
    assert 0 <= overhead <= 8 * len(integers) + 8 * 4 + 8


def test_rdoq_files_decode_to_the_encoders_latents(fitted):
    fitter, _, (refined, _, _, _), _ = fitted
    # encode_and_verify decodes the file and checks the symbols against the model's.
    _, decoded = encode_and_verify(fitter, refined, "rdoq test")
    assert np.abs(decoded.image.astype(int) - refined.reconstruction).max() <= 1
    assert np.mean(decoded.image != refined.reconstruction) < 0.05


def test_code_costs_are_additive_and_give_the_chosen_code():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = np.round(rng.laplace(0, rng.uniform(0.3, 300), rng.integers(1, 200)))
        values = values.astype(np.int64)
        costs = weights.code_costs(values)
        assert weights.choose_code(values)[1] == pytest.approx(costs.min(), rel=1e-12)
        split = rng.integers(0, values.size + 1)
        parts = weights.code_costs(values[:split]) + weights.code_costs(values[split:])
        np.testing.assert_allclose(parts, costs, rtol=1e-12)


def test_rdoq_refuses_bad_arguments(fitted):
    fitter = fitted[0]
    with pytest.raises(ValueError, match="max_delta"):
        NetworkRDOQ(fitter.model, fitter.target, LMBDA, weights.code_costs, max_delta=0)
    with pytest.raises(ValueError, match="lmbda"):
        NetworkRDOQ(fitter.model, fitter.target, 0.0, weights.code_costs)
    with pytest.raises(ValueError, match="passes"):
        NetworkRDOQ(fitter.model, fitter.target, LMBDA, weights.code_costs, passes=0)


def test_more_passes_lower_the_loss_further(fitted):
    """A move changes what the other integers are worth: a second pass finds more, and
    the passes stop once one changes nothing. The first of several passes is the one-pass
    refinement (same seed), so more passes never end higher."""
    fitter, (plain, plain_integers, _, _), _, _ = fitted
    reports, results = [], []
    for passes in (1, 4):
        rdoq = NetworkRDOQ(fitter.model, fitter.target, LMBDA, weights.code_costs, passes=passes)
        integers, report = rdoq(plain_integers, plain.steps)
        reports.append(report)
        results.append(integers)
    one, more = reports
    assert one.passes == 1 and 2 <= more.passes <= 4
    assert more.loss_before == one.loss_before
    assert more.loss_after < one.loss_after
    assert more.evaluations > one.evaluations and more.changed > one.changed
    # The model is left at the last integers.
    np.testing.assert_array_equal(fitter.model.network_integers(*plain.steps)[0], results[1][0])
