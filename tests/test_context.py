import numpy as np
import pytest
import tensorflow as tf

from models.c3.context import ContextModel, causal_offsets, flatten_grids, gather_window


def test_causal_offsets_are_the_24_previous_latents_of_a_7x7_window():
    offsets = causal_offsets(3)
    assert len(offsets) == 24
    assert len(causal_offsets(2)) == 12
    assert all(dy < 0 or (dy == 0 and dx < 0) for dy, dx in offsets)
    assert offsets == sorted(offsets)  # raster order


def test_gather_window_zero_pads_outside_the_grid():
    grid = tf.reshape(tf.range(1, 13, dtype=tf.float32), (3, 4))
    features = gather_window(grid, [(-1, 0), (0, -1)]).numpy()
    assert features[0, 0].tolist() == [0.0, 0.0]
    assert features[1, 1].tolist() == [grid[0, 1].numpy(), grid[1, 0].numpy()]


def _raster_causality_check(model, grids, grid_index):
    """Perturbs each latent of one grid; no earlier (or same) latent's params may move."""
    base_loc, base_scale = (t.numpy() for t in model(grids))
    sizes = [int(np.prod(g.shape)) for g in grids]
    offset = sum(sizes[:grid_index])
    h, w = grids[grid_index].shape
    rng = np.random.default_rng(0)
    for position in rng.choice(h * w, size=min(12, h * w), replace=False):
        perturbed = [g.numpy().copy() for g in grids]
        perturbed[grid_index].flat[position] += 3.0
        loc, scale = (t.numpy() for t in model([tf.constant(p) for p in perturbed]))
        changed = np.flatnonzero((loc != base_loc) | (scale != base_scale))
        in_grid = changed[(changed >= offset) & (changed < offset + h * w)] - offset
        assert np.all(in_grid > position), (position, in_grid[:5])
        yield changed


@pytest.mark.parametrize("use_prev_grid", [False, True])
def test_context_is_causal_in_raster_order(use_prev_grid):
    tf.keras.utils.set_random_seed(1)
    model = ContextModel(hidden=(8, 8), use_prev_grid=use_prev_grid, shift_log_scale=0.0)
    model.build()
    rng = np.random.default_rng(1)
    grids = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in [(9, 11), (5, 6), (3, 3)]]
    for k in range(len(grids)):
        for changed in _raster_causality_check(model, grids, k):
            if use_prev_grid:
                # Grid k may only influence grid k + 1 (decoded after it), never coarser
                # grids' predecessors: nothing before grid k changes.
                assert np.all(changed >= sum(int(np.prod(g.shape)) for g in grids[:k]))
            else:
                lo = sum(int(np.prod(g.shape)) for g in grids[:k])
                hi = lo + int(np.prod(grids[k].shape))
                assert np.all((changed >= lo) & (changed < hi))


def test_scale_is_clipped_to_range():
    model = ContextModel(hidden=(4,), scale_range=(1e-3, 150.0))
    model.build()
    features = tf.constant(np.random.default_rng(0).normal(size=(100, 24)) * 1e4, tf.float32)
    _, scale = model.distribution_params(features)
    assert np.all(scale.numpy() >= 1e-3 * 0.999) and np.all(scale.numpy() <= 150 * 1.001)


def test_flat_outputs_follow_grid_order():
    model = ContextModel(hidden=(4,))
    model.build()
    grids = [tf.zeros((4, 5)), tf.zeros((2, 3))]
    loc, scale = model(grids)
    assert loc.shape == (26,) and scale.shape == (26,)
    assert flatten_grids(grids).shape == (26,)
