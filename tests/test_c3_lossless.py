"""Lossless C3: files that decode to exactly the original, everywhere, or fail clearly."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from coding import fixed_point as fp
from coding import laplace_tables as lt
from coding import weights
from coding.c3 import codec as c3_codec
from coding.c3 import lossless as coder
from coding.c3.networks import C3Architecture, IntegerC3, prepare_parameters
from coding.container import Container, parse
from common.errors import BitstreamError
from common.images import encode_png, to_float
from configs import c3_kodak
from models import registry
from models.c3 import lossless as model_lossless
from models.c3.context import wavefront_slope
from models.c3.rdoq import NetworkRDOQ
from pipelines.per_image import make_fitter
from tests.helpers import (
    ROOT,
    decode_in_other_processes,
    run_in_process,
    run_script,
    smooth_image,
    tiny_fit_config,
)

ONE = 2.0**fp.ACTIVATION_BITS


def lossless_model_config(pixel_neighbours: int = 0):
    config = c3_kodak.get_config().model
    config.output = "lossless"
    config.pixel_neighbours = pixel_neighbours
    config.pixel_hidden = (8, 8)
    return config


@pytest.fixture(scope="module", params=[0, 12], ids=["latents_only", "pixel_context"])
def fitted(request):
    """A 32x48 image fitted briefly as lossless C3 (without and with the causal pixel
    context), and its file."""
    image = smooth_image(32, 48, seed=6)
    config = lossless_model_config(request.param)
    model = registry.build_model(config, height=32, width=48)
    fit_config = tiny_fit_config(60, 6)
    fit_config.rdoq = False
    fitter = make_fitter(model, fit_config)
    fitter.reset(to_float(image), 1e-4)
    initial = float(fitter.initial_loss.numpy())
    fit = fitter.fit()
    encoded = c3_codec.encode(model, *fit.steps, image=image)
    return image, model, fit, encoded, initial


def test_the_file_decodes_to_the_original_and_its_rate_is_as_estimated(fitted):
    image, model, fit, encoded, initial = fitted
    for jit in (True, False):
        np.testing.assert_array_equal(c3_codec.decode(encoded.data, jit=jit).image, image)
    parts = encoded.bits_header + encoded.bits_networks + encoded.bits_latents
    assert encoded.num_bits == parts + encoded.bits_pixels
    assert parse(encoded.data).codec == "c3_lossless"
    assert (
        c3_codec.decode(encoded.data).arch.pixel_neighbours
        == model.get_config()["pixel_neighbours"]
    )
    # The coded pixels cost what the float model estimated, to the tables' resolution.
    assert encoded.bits_pixels == pytest.approx(fit.bits_pixels, rel=0.03)
    # Fitting lowered the total bits.
    assert fit.loss < initial


def test_other_processes_decode_the_original_exactly(fitted, tmp_path):
    """Another process, other thread counts, XLA on or off: the original's PNG bytes."""
    image, _, _, encoded, _ = fitted
    path = tmp_path / "image.c3"
    path.write_bytes(encoded.data)
    for png in decode_in_other_processes(path):
        assert png == encode_png(image)


def test_the_golden_lossless_file_decodes_to_its_image():
    """The format pinned: a file written by the first lossless encoder decodes, in this
    and every later version, to exactly the image it coded."""
    with open(os.path.join(ROOT, "tests", "data", "golden_lossless.c3"), "rb") as f:
        decoded = c3_codec.decode(f.read())
    np.testing.assert_array_equal(decoded.image, smooth_image(32, 48, seed=7))
    assert decoded.arch.lossless and decoded.arch.synthesis_outputs == 9
    assert decoded.arch.pixel_neighbours == 0


def test_the_golden_pixel_context_file_decodes_to_its_image():
    """The same for a file with the causal pixel context (decoded in wavefronts)."""
    with open(os.path.join(ROOT, "tests", "data", "golden_lossless_context.c3"), "rb") as f:
        decoded = c3_codec.decode(f.read())
    np.testing.assert_array_equal(decoded.image, smooth_image(32, 48, seed=7))
    assert (decoded.arch.pixel_neighbours, decoded.arch.pixel_hidden) == (12, (16, 16))


def test_eval_writes_lossless_rows_and_a_bpsp_aggregate(tmp_path):
    import json

    from PIL import Image

    originals = tmp_path / "originals"
    originals.mkdir()
    Image.fromarray(smooth_image(32, 48, seed=7)).save(originals / "golden_lossless.png")
    golden = os.path.join(ROOT, "tests", "data", "golden_lossless.c3")
    out_dir = tmp_path / "eval"
    out = run_in_process(
        "eval.py", "--bitstreams", golden, "--originals", str(originals), "--out", str(out_dir)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads((out_dir / "results" / "golden_lossless.json").read_text())
    assert row["lossless"] and row["psnr"] is None and row["mse"] == 0
    assert row["bpsp"] == pytest.approx(8 * os.path.getsize(golden) / (3 * 32 * 48))
    summary = json.loads((out_dir / "results.json").read_text())
    assert summary["lossless"] and summary["results"]["bpsp"] == pytest.approx(row["bpsp"])
    # Another image as the "original": not lossless, an error and no row.
    Image.fromarray(smooth_image(32, 48, seed=8)).save(originals / "golden_lossless.png")
    out = run_in_process(
        "eval.py", "--bitstreams", golden, "--originals", str(originals), "--out",
        str(tmp_path / "eval2"),
    )  # fmt: skip
    assert out.returncode != 0 and "not lossless" in out.stderr


def test_a_damaged_pixel_section_is_an_error_and_no_image(fitted, tmp_path):
    image, _, _, encoded, _ = fitted
    container = parse(encoded.data)
    # A changed byte inside a section fails its CRC-16.
    data = bytearray(encoded.data)
    data[-3] ^= 0x40
    with pytest.raises(BitstreamError):
        c3_codec.decode(bytes(data))
    # A pixel section replaced by another valid one (its own CRC-16 right): the pixels
    # it decodes to fail the file's CRC-32 of the original.
    sections = list(container.sections)
    sections[3], sections[4] = sections[4], sections[3]
    swapped = Container("c3_lossless", container.header, tuple(sections)).to_bytes()
    with pytest.raises(BitstreamError, match="do not match the file's CRC|outside 0..255"):
        c3_codec.decode(swapped)
    source, target = tmp_path / "bad.c3", tmp_path / "out.png"
    source.write_bytes(swapped)
    out = run_script("codec.py", "decode", "-i", str(source), "-o", str(target))
    assert out.returncode != 0 and "error:" in out.stderr.splitlines()[-1]
    assert not target.exists()


def test_a_lossy_header_in_a_lossless_container_is_refused(fitted):
    _, _, _, encoded, _ = fitted
    container = parse(encoded.data)
    as_lossy = Container("c3", container.header[4:], container.sections).to_bytes()
    with pytest.raises(BitstreamError, match="c3 needs 2 sections"):
        c3_codec.decode(as_lossy)


def fixed_outputs(values: np.ndarray) -> tf.Tensor:
    """Synthesis outputs given as floats, at the activation scale (integers)."""
    return tf.constant(np.round(np.asarray(values, np.float64) * ONE))


def test_channel_rows_couple_the_channels_and_stay_in_the_pixel_range():
    # Pixel 0: means (0.5, 0.25, 0.75), b = e^1 everywhere, a_GR = 0.5, a_BR = -1,
    # a_BG = 2; pixel 1: means far outside [0, 1] and a huge coupling, clipped.
    k = 1 / model_lossless.COUPLING_SCALE  # the outputs are the coupling times 64
    outputs = fixed_outputs(
        [[0.5, 0.25, 0.75, 0, 0, 0, 0.5 * k, -k, 2 * k], [-3.0, 9.0, 0.5, -9, 20, 0, 50 * k, 0, 0]]
    )
    pixels = tf.constant([[137.0, 70.0, 180.0], [0.0, 255.0, 10.0]], tf.float64)
    mu = [np.zeros(2) for _ in range(3)]
    for c in range(3):
        rows, rounded = (t.numpy() for t in coder.channel_rows(outputs, pixels, c))
        assert rounded.min() >= 0 and rounded.max() <= 255
        _, bucket = np.divmod(rows, lt.NUM_OFFSETS)
        mu[c] = rounded + bucket / lt.OFFSET_BUCKETS - 0.5
    e_r, e_g = 137 - 127.5, 70 - 63.75
    np.testing.assert_allclose(mu[0][0], 127.5, atol=1 / 16)
    np.testing.assert_allclose(mu[1][0], 63.75 + 0.5 * e_r, atol=1 / 16)
    np.testing.assert_allclose(mu[2][0], 191.25 - e_r + 2 * e_g, atol=1 / 16)
    # Clipped: means to [0, 1] (R: 0; G: 255), mu to [0, 255] (G: 255 + 4 x 0).
    assert mu[0][1] == pytest.approx(0, abs=1 / 16) and mu[1][1] == pytest.approx(255, abs=1 / 16)
    rows, _ = (t.numpy() for t in coder.channel_rows(outputs, pixels, 0))
    scale_index, _ = np.divmod(rows, lt.NUM_OFFSETS)
    # ln b = s + 1 on the tables' grid (1/16 apart), clipped to their range.
    assert scale_index[0] == (1 - lt.LN_SCALE_MIN) * lt.SCALES_PER_LN
    assert scale_index[1] == 0


def test_the_float_model_predicts_what_the_coder_codes():
    """The float distribution (what is fitted) and the fixed-point rows (what is coded)
    agree to the tables' resolution, coupling included."""
    rng = np.random.default_rng(0)
    n = 500
    coupling = rng.uniform(-5, 5, (n, 3)) / model_lossless.COUPLING_SCALE
    values = np.concatenate(
        [rng.uniform(-0.2, 1.2, (n, 3)), rng.uniform(-3, 4, (n, 3)), coupling], axis=1
    )
    outputs = fixed_outputs(values)
    pixels = rng.integers(0, 256, (n, 3)).astype(np.float64)
    mu, b = model_lossless.distribution(
        tf.constant(outputs.numpy() / ONE, tf.float32), tf.constant(pixels, tf.float32)
    )
    for c in range(3):
        rows, rounded = (t.numpy() for t in coder.channel_rows(outputs, tf.constant(pixels), c))
        scale_index, bucket = np.divmod(rows, lt.NUM_OFFSETS)
        got_mu = rounded + bucket / lt.OFFSET_BUCKETS - 0.5
        assert np.abs(got_mu - mu.numpy()[:, c]).max() <= 1 / lt.OFFSET_BUCKETS
        expected = np.round((np.log(b.numpy()[:, c]) - lt.LN_SCALE_MIN) * lt.SCALES_PER_LN)
        assert np.abs(scale_index - expected).max() <= 1
    assert model_lossless.LN_SCALE_RANGE == (lt.LN_SCALE_MIN, lt.LN_SCALE_MAX)


def test_flat_bits_are_those_of_one_laplace_per_channel():
    image = np.zeros((4, 4, 3), np.float32)
    image[..., 1] = 100 / 255
    image[0, 0, 2] = 1.0  # one outlier in B
    bits = model_lossless.flat_bits_per_pixel(image)
    # R and G are constant: b is the tables' smallest, P(0) ~ 1, almost no bits; B pays
    # for its outlier.
    assert 0 < bits < 16
    assert bits > model_lossless.flat_bits_per_pixel(np.zeros((4, 4, 3), np.float32))


@pytest.mark.parametrize("fitted", [12], indirect=True, ids=["pixel_context"])
def test_rdoq_refines_a_lossless_model_on_its_total_bits(fitted):
    """RDOQ on lossless C3 scores lmbda x (pixel + latent + network bits) / pixels, visits
    the pixel context too, lowers that loss, and the file still decodes exactly."""
    image, model, fit, encoded, _ = fitted
    parameters = [v.numpy() for v in model.network_variables]
    integers = model.network_integers(*fit.steps)
    rdoq = NetworkRDOQ(model, to_float(image), 1e-4, weights.code_costs, max_delta=3)
    refined, report = rdoq(integers, fit.steps)
    total = fit.bits_pixels + fit.bits_latents + report.network_bits_before
    assert report.loss_before == pytest.approx(1e-4 * total / image[..., 0].size, rel=1e-4)
    assert report.loss_after < report.loss_before and report.changed > 0
    pixel = {id(v) for v in model.pixel_context.trainable_variables}
    moved = [
        id(v) in pixel
        for v, a, b in zip(model.network_variables, integers, refined, strict=True)
        if not np.array_equal(a, b)
    ]
    assert any(moved) and not all(moved)  # the pixel context and other modules
    own = c3_codec.encode(model, *fit.steps, image=image)  # at the refined integers
    np.testing.assert_array_equal(c3_codec.decode(own.data).image, image)
    assert own.bits_pixels != encoded.bits_pixels
    for v, value in zip(model.network_variables, parameters, strict=True):
        v.assign(value)  # the module's fitted model, as the fixture left it


def test_the_lossless_config_encodes_through_the_cli(tmp_path):
    from PIL import Image

    image = smooth_image(24, 40, seed=2)
    source, target = tmp_path / "in.png", tmp_path / "out.c3"
    Image.fromarray(image).save(source)
    decoded = tmp_path / "decoded.png"
    steps = ["--config.fit.num_noise_steps=20", "--config.fit.max_ste_steps=2"]
    out = run_script(
        "codec.py", "encode", "--config", "configs/c3_lossless.py", *steps,
        "--config.fit.log_every=20", "-i", str(source), "-o", str(target),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lossless" in out.stdout and "bpsp" in out.stdout
    out = run_script("codec.py", "decode", "-i", str(target), "-o", str(decoded))
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_array_equal(np.asarray(Image.open(decoded).convert("RGB")), image)


def test_the_pixel_context_reads_only_causal_neighbours():
    """A pixel's corrected outputs depend on the pixels at its offsets alone (none of its
    own values, none decoded after it): changing one pixel changes exactly the outputs
    of the pixels that have it as a neighbour."""
    context = model_lossless.PixelContext(12, (8,))
    context.build()
    rng = np.random.default_rng(1)
    for layer in [*context.layers_, context.linear]:  # nonzero: every input matters
        layer.kernel.assign(rng.normal(0, 1, layer.kernel.shape))
    h, w = 9, 11
    outputs = tf.constant(rng.normal(0.5, 0.3, (h, w, 9)), tf.float32)
    pixels = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    before = context(outputs, tf.constant(pixels)).numpy()
    y0, x0 = 4, 5
    pixels[y0, x0] += [7, -3, 11]
    changed = np.any(context(outputs, tf.constant(pixels)).numpy() != before, axis=-1)
    readers = {(y0 - dy, x0 - dx) for dy, dx in model_lossless.pixel_offsets(12)}
    assert {tuple(p) for p in np.argwhere(changed)} == readers
    # Every reader comes after the pixel in the decoder's wavefront order.
    slope = wavefront_slope(model_lossless.pixel_offsets(12))
    assert all(slope * y + x > slope * y0 + x0 for y, x in readers)


def test_the_fixed_point_pixel_context_matches_the_float_one():
    """The coder's corrected outputs (integers, `IntegerC3.corrected_outputs` on
    `coder.prediction_errors`) and the float model's (what is fitted) agree to the
    activation rounding, for the same quantised weights."""
    model = registry.build_model(lossless_model_config(12), height=10, width=12)
    rng = np.random.default_rng(2)
    for v in model.pixel_context.trainable_variables:
        v.assign(rng.normal(0, 0.5, v.shape))
    steps = (2.0**-8, 2.0**-10)
    integers = model.network_integers(*steps)
    model.set_network_integers(integers, *steps)
    arch = C3Architecture.from_model_config(model.get_config(), *steps)
    integer_model = IntegerC3(arch, prepare_parameters(arch, integers))
    outputs = np.round(rng.normal(0.5, 0.4, (10, 12, 9)) * ONE) / ONE
    pixels = rng.integers(0, 256, (10, 12, 3)).astype(np.float64)
    expected = model.pixel_context(
        tf.constant(outputs, tf.float32), tf.constant(pixels, tf.float32)
    )
    flat_outputs = tf.constant(outputs.reshape(-1, 9) * ONE)
    errors = coder.prediction_errors(flat_outputs, tf.constant(pixels.reshape(-1, 3)))
    neighbours = model_lossless.shifted_pixels(
        tf.reshape(errors, (10, 12, 3)), model_lossless.pixel_offsets(12)
    )
    got = integer_model.corrected_outputs(flat_outputs, tf.reshape(neighbours, (120, -1)))
    assert np.all(got.numpy() == np.round(got.numpy()))  # integers
    difference = np.abs(got.numpy() / ONE - expected.numpy().reshape(-1, 9))
    assert difference.max() < 0.01
    assert np.abs(expected.numpy() - outputs).max() > 0.1  # the context did something


@pytest.mark.parametrize("fitted", [12], indirect=True, ids=["pixel_context"])
def test_the_pixel_context_has_steps_of_its_own_and_the_decoder_uses_them(fitted):
    """A file whose pixel context is sent at a 4x finer step than the synthesis (the
    same parameters, 4x the integers) decodes to the original (a decoder that took the
    synthesis's step would predict other distributions and fail its CRC), with the same
    coded pixels; the steps travel in the header (second flags byte, bit 4)."""
    image, model, fit, encoded, _ = fitted
    pixel_steps = tuple(step / 4 for step in fit.steps[4] or fit.steps[:2])
    own = c3_codec.encode(model, *fit.steps[:4], pixel_steps, image=image)
    decoded = c3_codec.decode(own.data)
    np.testing.assert_array_equal(decoded.image, image)
    assert decoded.arch.separate_pixel_steps
    assert decoded.arch.pixel_bits == tuple(fp.step_bits(s, "") for s in pixel_steps)
    assert own.bits_pixels == encoded.bits_pixels  # the same distributions
    assert own.bits_networks > encoded.bits_networks  # two more bits per integer


@pytest.mark.parametrize("fitted", [12], indirect=True, ids=["pixel_context"])
def test_the_network_search_gives_the_pixel_context_its_own_pair(fitted):
    """`fit.per_module_steps` on lossless C3: the context model's, the synthesis's and the
    pixel context's pairs are searched in turn, each search from the best so far, so the
    loss is at most that of one shared pair."""
    image, model, fit, _, _ = fitted
    fit_config = tiny_fit_config(0, 0)
    fit_config.rdoq = False
    fit_config.weight_steps = fit_config.bias_steps = tuple(2.0**-b for b in range(5, 15, 2))
    parameters = [v.numpy() for v in model.trainable_variables]  # the fitted model
    fitter = make_fitter(model, fit_config)
    fitter.reset(to_float(image), 1e-4)  # initialises the model: the fitted one back
    for v, value in zip(model.trainable_variables, parameters, strict=True):
        v.assign(value)
    shared = fitter.quantize_networks()
    for v, value in zip(model.trainable_variables, parameters, strict=True):
        v.assign(value)
    searched = []
    search = fitter._search
    fitter._search = lambda what, *args: searched.append(what) or search(what, *args)
    fit_config.per_module_steps = True
    own = fitter.quantize_networks()
    assert searched == ["step pair", "context model pair", "synthesis pair", "pixel context pair"]
    assert own.loss <= shared.loss
    if own.pixel_steps is not None:
        assert own.pixel_steps != own.steps[:2]
    encoded = c3_codec.encode(model, *own.steps, image=image)
    np.testing.assert_array_equal(c3_codec.decode(encoded.data).image, image)
    for v, value in zip(model.trainable_variables, parameters, strict=True):
        v.assign(value)  # the module's fitted model, as the fixture left it


@pytest.mark.parametrize("fitted", [12], indirect=True, ids=["pixel_context"])
def test_per_tensor_steps_lower_the_total_bits_and_the_file_decodes_exactly(fitted):
    """`fit.per_tensor_steps` on lossless C3 (on in configs/c3_lossless.py): each tensor's
    step around its module's, the pixel context's tensors included, searched on the total
    bits; the file carries the shifts and the decoder's distributions are the encoder's
    (the CRC would fail otherwise); the header bits are paid."""
    image, model, _, _, _ = fitted
    fit_config = tiny_fit_config(0, 0)
    fit_config.rdoq = False
    fit_config.per_module_steps = True
    parameters = [v.numpy() for v in model.trainable_variables]
    fitter = make_fitter(model, fit_config)
    fitter.reset(to_float(image), 1e-4)
    results = []
    for per_tensor in (False, True):
        for v, value in zip(model.trainable_variables, parameters, strict=True):
            v.assign(value)
        fit_config.per_tensor_steps = per_tensor
        quantized = fitter.quantize_networks()
        encoded = c3_codec.encode(model, *quantized.steps, image=image)
        decoded = c3_codec.decode(encoded.data)
        np.testing.assert_array_equal(decoded.image, image)
        results.append((quantized, encoded, decoded.arch))
    (module, module_file, _), (tensor, tensor_file, arch) = results
    assert tensor.step_shifts is not None and arch.step_shifts == tensor.step_shifts
    assert len(arch.step_shifts) == len(model.network_variables)  # pixel context included
    assert tensor.loss < module.loss
    assert tensor_file.num_bits < module_file.num_bits
    for v, value in zip(model.trainable_variables, parameters, strict=True):
        v.assign(value)  # the module's fitted model, as the fixture left it


def test_pixel_context_header_fields_round_trip_and_are_checked():
    config = registry.build_model(lossless_model_config(12), height=16, width=24).get_config()
    arch = C3Architecture.from_model_config(config, 2.0**-8, 2.0**-10)
    assert (arch.pixel_neighbours, arch.pixel_hidden) == (12, (8, 8))
    header = arch.to_bytes()
    assert C3Architecture.from_bytes(header) == arch
    assert header.endswith(bytes([12, 2, 8, 8]))  # neighbours, depth, widths
    # No neighbours with the flag set: refused.
    with pytest.raises(BitstreamError, match="pixel context"):
        C3Architecture.from_bytes(header[:-4] + bytes([0, 2, 8, 8]))
    # The pixel context's own steps: two bytes after its shape, behind flag bit 4.
    arch = C3Architecture.from_model_config(
        config, 2.0**-8, 2.0**-10, None, None, (2.0**-11, 2.0**-12)
    )
    header = arch.to_bytes()
    assert C3Architecture.from_bytes(header) == arch and arch.pixel_bits == (11, 12)
    assert header.endswith(bytes([12, 2, 8, 8, 11, 12]))
    without = dataclasses.replace(arch, pixel_neighbours=0, pixel_hidden=())
    with pytest.raises(BitstreamError, match="pixel context steps"):
        C3Architecture.from_bytes(without.to_bytes())  # the flag without the pixel context
    # A pixel context on a lossy model: refused by the model and by the format.
    lossy = lossless_model_config(12)
    lossy.output = "image"
    with pytest.raises(ValueError, match="lossless"):
        registry.build_model(lossy, height=16, width=24)


def test_the_mean_anchor_adds_the_synthesis_means_error_and_holds_them_to_the_image():
    """`fit.mean_anchor`: the training loss is the total bits plus the anchor times the
    MSE of the synthesis's own means (before the pixel context), and a fit with it keeps
    those means nearer the image than one without (where the context's correction from
    its neighbours' errors leaves them free to drift)."""
    image = to_float(smooth_image(32, 48, seed=6))
    synthesis_mse = {}
    for anchor in (0.0, 1.0):
        tf.keras.utils.set_random_seed(0)
        model = registry.build_model(lossless_model_config(12), height=32, width=48)
        fit_config = tiny_fit_config(80, 0)
        fit_config.rdoq = False
        fit_config.mean_anchor = anchor
        fitter = make_fitter(model, fit_config)
        fitter.reset(image, 1e-4)
        loss, out = fitter._loss("round")
        bits = 1e-4 * (out["pixel_bits"] + out["bits"]) / (32 * 48)
        assert float(loss) == pytest.approx(float(bits + anchor * out["mse_synthesis"]), 1e-5)
        fitter.fit()
        synthesis_mse[anchor] = float(fitter._loss("round")[1]["mse_synthesis"])
    assert synthesis_mse[1.0] < 0.5 * synthesis_mse[0.0]


def test_the_learning_check_holds_a_lossless_fit_to_the_flat_laplace():
    """A lossless fit is not learning if its bits are not below those of one Laplace per
    channel at the mean colour: no 1.5x slack as for a lossy fit's MSE (a fit that went
    on to blow up was 1.07x above it at step 100), and the message speaks in bits."""
    image = to_float(smooth_image(32, 48, seed=6))
    problems = {}
    for output in ("lossless", "rgb"):
        config = lossless_model_config(12) if output == "lossless" else c3_kodak.get_config().model
        model = registry.build_model(config, height=32, width=48)
        fitter = make_fitter(model, tiny_fit_config(60, 0))
        fitter.reset(image, 1e-4)
        loss = fitter._hard_loss()
        for ratio in (0.8, 1.2):  # the flat reference below and above the fit's loss
            fitter.flat_loss.assign(loss / ratio)
            fitter.initial_loss.assign(10 * loss)  # not the "barely moved" check
            problems[output, ratio] = fitter._learning_problem()
    assert problems["rgb", 0.8] is None and problems["rgb", 1.2] is None
    assert problems["lossless", 0.8] is None
    assert "bits per pixel at step 0, not below the" in problems["lossless", 1.2]
    assert "of one Laplace per channel at the mean colour" in problems["lossless", 1.2]
