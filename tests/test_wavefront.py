"""Wavefront coding of latents: causal order, exact round trip, one step per wavefront."""

import numpy as np
import pytest

from coding.c3.networks import C3Architecture, prepare_parameters
from coding.c3.wavefront import Canvas, Schedule
from configs import c3_clic2020, c3_kodak, coolchic
from models.c3.context import context_offsets, wavefront_slope
from tests.helpers import STEPS, assert_latents_round_trip, random_model

ALL_AT_ONCE = [[0, 1, 2, 3, 4]]
ONE_BY_ONE = [[0], [1], [2], [3], [4]]  # C3's previous-grid conditioning
COARSE_FIRST = [[2, 3, 4], [1], [0]]  # Cool-chic 5's inter-grid context


@pytest.mark.parametrize(
    "rows_cols,neighbours,groups",
    [
        (3, 0, ALL_AT_ONCE),
        (2, 0, ALL_AT_ONCE),
        (3, 0, ONE_BY_ONE),
        (3, 0, COARSE_FIRST),
        (0, 14, COARSE_FIRST),  # Cool-chic 5's priority-ordered neighbours: slope 3
    ],
)
def test_every_context_is_decoded_before_its_latent(rows_cols, neighbours, groups):
    shapes = [(9, 14), (5, 7), (3, 4), (2, 2), (1, 1)]
    offsets = context_offsets(rows_cols, neighbours)
    canvas = Canvas(shapes, 4)
    slope = wavefront_slope(offsets)
    assert slope == (3 if neighbours else rows_cols + 1)
    schedule = Schedule(canvas, slope, groups)
    decoded_at = np.full(canvas.size, -1)
    step = 0
    for waves, counts in zip(schedule.phase_waves, schedule.phase_counts, strict=True):
        for row, n in zip(waves, counts, strict=True):
            decoded_at[row[:n]] = step
            step += 1
    order = schedule.order
    assert len(order) == sum(h * w for h, w in shapes) == len(set(order))
    offsets = canvas.offsets(offsets)
    for position in order:
        for context in position + offsets:
            # Inside a grid: decoded in an earlier wavefront; outside: a zero border.
            assert decoded_at[context] < decoded_at[position]
    # One step per wavefront: (r + 1)(h - 1) + w for the largest grid, grids at once.
    if groups == ALL_AT_ONCE:
        assert schedule.num_wavefronts == slope * 8 + 14


@pytest.mark.parametrize(
    "module,height,width",
    [(c3_kodak, 20, 30), (coolchic, 17, 9), (c3_clic2020, 19, 26), (c3_kodak, 1, 5)],
)
def test_round_trip_with_and_without_xla(module, height, width):
    model = random_model(module.get_config().model, height, width)
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    parameters = prepare_parameters(arch, model.network_integers(*STEPS))
    rng = np.random.default_rng(3)
    symbols = [np.round(rng.laplace(0, 3, s)).astype(np.int32) for s in arch.grid_shapes]
    symbols[0][0, 0] = 900  # far outside every table row: escape coded
    assert_latents_round_trip(arch, parameters, symbols)
