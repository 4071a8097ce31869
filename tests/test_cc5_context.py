"""Cool-chic 5's context model: the inter-grid context and hyperlatents
(models/c3/intergrid.py), its priority-ordered neighbours and residual layers with a
stabiliser (models/c3/context.py), and their fixed-point decoder: levels, causality,
initialisation, exactness and the file."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from coding.c3 import codec as c3_codec
from coding.c3.networks import C3Architecture, IntegerC3, prepare_parameters
from coding.c3.wavefront import LatentCoder, decode_groups, wavefront_lags
from common.errors import BitstreamError
from models.c3.context import PRIORITY_OFFSETS, ContextModel, wavefront_slope
from models.c3.intergrid import InterGridContext, feature_inputs
from models.c3.latents import grid_levels
from models.c3.model import C3Model
from tests.helpers import STEPS, assert_latents_round_trip, assert_rows_follow, run_script

INTER_GRID = dict(num_hyperlatents=2, inter_grid_features=6, inter_grid_grids=3)
# Cool-chic 5's "14,2/stabiliser" context model on 14 neighbours + 6 features.
CC5_ARM = dict(context_neighbours=14, arm_residual=True, arm_hidden=(20, 20))


def test_levels_inputs_and_costs_of_cool_chic_5():
    # 7 latent grids and 3 hyperlatents at 1/16, 1/32, 1/64 (Cool-chic 5 below 1 MP).
    levels = grid_levels(7, 3)
    assert levels == [0, 1, 2, 3, 4, 5, 6, 4, 5, 6]
    context = InterGridContext(7, 3, num_features=6, num_feature_grids=3)
    context.build()
    # The finest three grids see 9, 8 and 7 decoded coarser grids: 162 parameters.
    assert context.input_sizes() == [9, 8, 7]
    assert sum(int(np.prod(v.shape)) for v in context.trainable_variables) == 162
    # One layer per grid at the next coarser level: 17 MACs per pixel in Cool-chic 5.
    assert context.macs_per_pixel(512, 768) == 18  # 13.5 + 3 + 0.66, rounded up
    model = C3Model(512, 768, num_hyperlatents=3, inter_grid_features=6)
    assert model.grid_shapes[7:] == [(32, 48), (16, 24), (8, 12)]
    assert model.latent_grids.gains[7:] == [16.0, 32.0, 64.0]
    assert model.context_model.num_inputs == 24 + 6
    assert model.macs_per_pixel()["inter_grid"] == 18


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="choose one"):
        ContextModel(use_prev_grid=True, inter_grid_features=6)
    with pytest.raises(ValueError, match="need inter-grid features"):
        ContextModel(num_hyperlatents=2)
    with pytest.raises(ValueError, match="feature grids"):
        InterGridContext(4, 0, num_features=6, num_feature_grids=4)


def moved_model(seed=0, height=26, width=38, **kwargs):
    """A model with inter-grid context, its latents and context model moved off init."""
    tf.keras.utils.set_random_seed(seed)
    model = C3Model(height, width, num_grids=5, **(INTER_GRID | kwargs))
    rng = np.random.default_rng(seed)
    for v in model.latent_grids.trainable_variables:
        v.assign(rng.normal(scale=1.5, size=v.shape).astype(np.float32))
    for v in model.context_model.trainable_variables:
        v.assign(v + rng.normal(scale=0.2, size=v.shape).astype(np.float32))
    model.set_network_integers(model.network_integers(*STEPS), *STEPS)
    return model


def grid_values(model):
    symbols = model.symbols()
    return [tf.constant(s * model.q_step, tf.float32) for s in symbols]


def test_features_read_only_coarser_levels():
    model = moved_model()
    context = model.context_model.inter_grid
    grids = grid_values(model)
    features = context(grids)
    levels = model.latent_grids.levels
    assert [f.shape[:2] for f in features] == [g.shape for g in grids]
    assert all(not np.any(f) for f in features[3:])  # grids without features: zeros
    for k in range(3):
        assert np.abs(features[k]).max() > 0
        # Changing grid k, the finer grids and the hyperlatents at grid k's level or
        # finer leaves its features alone ...
        changed = [g + 5.0 if levels[j] <= levels[k] else g for j, g in enumerate(grids)]
        np.testing.assert_array_equal(context(changed)[k], features[k])
        # ... each coarser grid changes them.
        for j in feature_inputs(levels, k):
            changed = [g + 5.0 if i == j else g for i, g in enumerate(grids)]
            assert np.abs(context(changed)[k] - features[k]).max() > 0


def test_pipelined_order_decodes_every_feature_input_first():
    arch = C3Architecture.from_model_config(moved_model().get_config(), *STEPS)
    assert arch.pipelined_order
    # Latents 0-4, hyperlatents (levels 3, 4) as grids 5, 6: all grids in one phase, a
    # grid one level coarser one wavefront ahead.
    assert decode_groups(arch) == [list(range(7))]
    assert wavefront_lags(arch) == [4, 3, 2, 1, 0, 1, 0]
    coder = LatentCoder(arch)
    schedule = coder.schedule
    wave = np.full(coder.canvas.size, -1)
    wave[schedule.order] = schedule.wave_of_order
    for k in range(arch.inter_grid_grids):
        positions = coder.canvas.positions(k)
        sources, grids = coder._feature_sources(tf.constant(positions))
        assert np.all(grids.numpy() == k)
        inputs = len(feature_inputs(arch.grid_levels, k))
        sources = sources.numpy()
        # Every feature input is a latent of a coarser grid decoded in an earlier
        # wavefront; the padding reads position 0, a zero border.
        assert np.all(wave[sources[:, :inputs]] >= 0)
        assert np.all(wave[sources[:, :inputs]] < wave[positions][:, None])
        assert np.all(sources[:, inputs:] == 0)
    # Files from before the pipeline: grids without features first, together; then grid
    # 2, 1, 0, each after every coarser grid.
    phased = dataclasses.replace(arch, pipelined_order=False)
    assert decode_groups(phased) == [[3, 4, 5, 6], [2], [1], [0]]
    assert LatentCoder(phased).schedule.num_wavefronts > schedule.num_wavefronts


def test_pointwise_features_equal_the_grid_features():
    model = moved_model(seed=4)
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    integer = IntegerC3(arch, prepare_parameters(arch, model.network_integers(*STEPS)))
    coder = LatentCoder(arch)
    symbols = [tf.constant(s) for s in model.symbols()]
    expected = coder._feature_canvas(integer, symbols)
    canvas = np.zeros(coder.canvas.size, np.int32)
    for k, s in enumerate(model.symbols()):
        canvas[coder.canvas.positions(k)] = s.ravel()
    positions = tf.constant(coder.schedule.order)  # every latent, features or not
    sources, grids = coder._feature_sources(positions)
    inputs = tf.cast(tf.gather(canvas, sources), tf.float64)
    got = integer.pointwise_inter_grid_features(inputs, grids)
    assert np.any(got.numpy())
    np.testing.assert_array_equal(got.numpy(), tf.gather(expected, positions).numpy())


def test_fixed_point_context_follows_the_float_model():
    model = moved_model(seed=1)
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    assert C3Architecture.from_bytes(arch.to_bytes()) == arch
    integer = IntegerC3(arch, prepare_parameters(arch, model.network_integers(*STEPS)))
    symbols = model.symbols()
    floats = model.context_model.inter_grid(grid_values(model))
    for k in range(3):
        fixed = integer.inter_grid_features([tf.constant(s) for s in symbols], k).numpy()
        # Activations at 2^-12: rounding the inputs and the output, a few units apart.
        np.testing.assert_allclose(fixed / 2**12, floats[k].numpy(), atol=4 * 2**-12)


@pytest.mark.parametrize("hyperlatents,pipelined", [(0, True), (2, True), (2, False)])
def test_latents_round_trip_with_and_without_xla(hyperlatents, pipelined):
    model = moved_model(seed=2, num_hyperlatents=hyperlatents)
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    arch = dataclasses.replace(arch, pipelined_order=pipelined)  # False: older files
    parameters = prepare_parameters(arch, model.network_integers(*STEPS))
    assert_latents_round_trip(arch, parameters, model.symbols())


def test_file_decodes_the_same_in_another_process(tmp_path):
    model = moved_model(seed=3)
    encoded = c3_codec.encode(model, *STEPS)
    here = c3_codec.decode(encoded.data)
    assert here.arch.num_hyperlatents == 2 and here.arch.inter_grid_features == 6
    assert len(here.symbols) == 7  # hyperlatents included
    path = tmp_path / "inter_grid.c3"
    path.write_bytes(encoded.data)
    out = run_script(
        "codec.py", "decode", "-i", str(path), "-o", str(tmp_path / "d.png"), "--nojit"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), here.image)


def test_damaged_inter_grid_headers_are_refused():
    arch = C3Architecture.from_model_config(moved_model().get_config(), *STEPS)
    header = arch.to_bytes()
    # Hyperlatents, features, feature grids; the second flags byte: the pipelined order.
    assert header[-4:] == bytes([2, 6, 3, 2])
    for bad in (bytes([2, 0, 3]), bytes([2, 6, 5]), bytes([6, 6, 3])):
        with pytest.raises(BitstreamError):
            C3Architecture.from_bytes(header[:-4] + bad + header[-1:])
    with pytest.raises(BitstreamError):
        C3Architecture.from_bytes(header[:-1] + bytes([8]))  # an unknown flag
    with pytest.raises(BitstreamError):
        C3Architecture.from_bytes(header[:-1])  # truncated


def test_cool_chic_5_context_model_shape_and_initialisation():
    # Cool-chic 5's priority order: the nearest neighbours first, inside a 9x9 window;
    # (-1, +2) makes the wavefront slope 3 (C3's 7x7 raster window: 4).
    assert PRIORITY_OFFSETS[:4] == ((0, -1), (-1, 0), (-1, -1), (-1, 1))
    assert all(dy < 0 or dx < 0 for dy, dx in PRIORITY_OFFSETS)
    assert max(max(abs(dy), abs(dx)) for dy, dx in PRIORITY_OFFSETS) <= 4
    assert wavefront_slope(PRIORITY_OFFSETS) == 3
    tf.keras.utils.set_random_seed(0)
    model = C3Model(512, 768, num_hyperlatents=3, inter_grid_features=6, **CC5_ARM)
    context = model.context_model
    assert context.num_inputs == 20
    hidden, output, stabiliser = context.mlp[:2], context.mlp[2], context.stabiliser
    # Residual layers start as the identity (zero), output and stabiliser N(0, 1/4^2).
    assert all(not np.any(layer.kernel.numpy()) for layer in hidden)
    for layer in (output, stabiliser):
        assert 0.1 < np.std(layer.kernel.numpy()) < 0.4
    assert not np.allclose(output.kernel.numpy(), stabiliser.kernel.numpy())
    # The bitstream's order: hidden layers, output, stabiliser, then inter-grid layers.
    ids = [id(v) for v in context.trainable_variables]
    assert ids.index(id(stabiliser.kernel)) == 6
    assert ids.index(id(context.inter_grid.trainable_variables[0])) == 8
    assert len(ids) == 6 + 2 + 2 * 3
    # 2 x 20 x 20 + 20 x 2 + the stabiliser's 20 x 2 = 880 per latent (Cool-chic 5).
    assert context.macs_per_latent() == 880
    assert model.macs_per_pixel()["total"] < 2100
    with pytest.raises(ValueError, match="input width"):
        C3Model(32, 32, inter_grid_features=6, context_neighbours=14, arm_residual=True)


def test_residual_context_model_is_causal():
    model = moved_model(seed=4, **CC5_ARM)
    grids = grid_values(model)
    loc, _ = model.context_model(grids)
    # Grid 0 (decoded last) at (y, x): only its priority neighbours and coarser grids.
    h, w = grids[0].shape
    y, x = 6, 7
    changed = [tf.tensor_scatter_nd_add(grids[0], [[y, x]], [3.0])] + grids[1:]
    moved = np.flatnonzero(np.abs(model.context_model(changed)[0] - loc) > 0)
    readers = {(y - dy) * w + (x - dx) for dy, dx in PRIORITY_OFFSETS}
    assert len(moved) > 0 and set(moved) <= readers


def test_fixed_point_residual_context_model_follows_the_float_model():
    model = moved_model(seed=5, **CC5_ARM)
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    assert arch.context_neighbours == 14 and arch.arm_residual
    assert C3Architecture.from_bytes(arch.to_bytes()) == arch
    integer = IntegerC3(arch, prepare_parameters(arch, model.network_integers(*STEPS)))
    rng = np.random.default_rng(1)
    context = rng.integers(-6, 7, (2000, 14)).astype(np.int32)
    features = rng.normal(0, 1, (2000, 6))
    inputs = np.concatenate([context * model.q_step, features], axis=1).astype(np.float32)
    loc, scale = model.context_model.distribution_params(tf.constant(inputs))
    fixed_features = tf.constant(np.round(features * 2**12))
    rows, rounded = integer.context_rows(tf.constant(context), None, fixed_features)
    assert np.std(loc.numpy() / model.q_step) > 0.5  # a context model that predicts
    assert_rows_follow(loc, scale, model.q_step, rows, rounded)


def test_cool_chic_5_context_file_decodes_the_same_in_another_process(tmp_path):
    model = moved_model(seed=6, **CC5_ARM)
    encoded = c3_codec.encode(model, *STEPS)
    here = c3_codec.decode(encoded.data)
    for got, expected in zip(here.symbols, model.symbols(), strict=True):
        np.testing.assert_array_equal(got, expected)
    path = tmp_path / "cc5_context.c3"
    path.write_bytes(encoded.data)
    out = run_script("codec.py", "decode", "-i", str(path), "-o", str(tmp_path / "d.png"))
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), here.image)
    header = bytearray(here.arch.to_bytes())
    # The second flags byte (this context model, the pipelined order), neighbours, residual.
    assert header[-3:] == bytes([3, 14, 1])
    for at, bad in ((-1, 2), (-3, 0), (-3, 8), (-3, 11)):  # neither residual nor not; flags
        damaged = bytearray(header)
        damaged[at] = bad
        with pytest.raises(BitstreamError):
            C3Architecture.from_bytes(bytes(damaged))
