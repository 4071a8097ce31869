"""Wavefront-order range coding of C3's latent grids.

The context model predicts each latent from the causal window before it (rows above up
to r columns left and right, and r latents to the left). A latent at (y, x) can
therefore be decoded once every latent with a smaller t = s y + x is known, with the
slope s = r + 1 (3 for Cool-chic 5's priority-ordered neighbours, `wavefront_slope`):
all latents with the same t form a *wavefront* and are independent. The decoder makes one
batched fixed-point context-model evaluation and one `entropy_decode_index` call per
wavefront, inside one compiled `tf.while_loop`: s (H - 1) + W steps for the largest
grid instead of one per latent. Without previous-grid conditioning every grid is decoded
in the same wavefronts; with it (C3's CLIC2020 configuration), grid k needs all of grid
k - 1, so grids are decoded one after the other, finest first, each in wavefronts.

With Cool-chic 5's inter-grid context, grid k's features at (y, x) read every coarser
grid at (y >> d, x >> d), d the level difference. Cool-chic decodes the grids coarse to
fine, one after the other (4,308 wavefronts at 768x512 here, files written before the
pipelined order). Ours *pipelines* them: latent (y, x) of a grid at level l belongs to
wavefront s y + x + (L - l), L the coarsest level, so a grid one level coarser runs one
wavefront ahead, and every feature input, in wavefront s (y >> d) + (x >> d) + L - l - d
< s y + x + L - l, is decoded before the latent that reads it. All grids then share
the largest grid's wavefronts (+ L): 2,307 at 768x512, and the features of a wavefront's
latents are computed with its context model call (`_feature_sources`).

The encoder computes the same contexts from the same layout (`Canvas`), evaluates the
same fixed-point context model (in one batch: exact arithmetic makes the batching
irrelevant) and range codes all symbols in the decoder's order in one call, each
wavefront a group of `coding.range_coding` (its symbols, then its escapes); tfc's
decoder can decode what was encoded in one call in many successive calls on the same
handle. Every wavefront's decoding work is bounded by its number of latents, whatever
the file holds. Files of format version 1 used tfc's escape code: they are decoded with
plain symbol decoding per wavefront and, if a wavefront holds an escape, decoded again
one latent at a time (`Coder.decode_v1_group`, bounded too).

Latents live on a `Canvas`: every grid in one flat buffer with a common row stride and
zero borders, so the causal context of any latent is `position + offsets` for one
constant offset vector.
"""

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from coding import fixed_point as fp
from coding import laplace_tables as lt
from coding.c3.networks import C3Architecture, IntegerC3
from coding.range_coding import Coder
from common.errors import BitstreamError
from models.c3.context import context_offsets, wavefront_slope, window_offsets
from models.c3.intergrid import feature_inputs

_ARM_BATCH = 2**16  # encoder: latents per context-model evaluation (bounds memory)


class Canvas:
    """All grids in one zero-padded flat buffer with a common row stride."""

    def __init__(self, shapes: list[tuple[int, int]], pad: int):
        self.shapes = list(shapes)
        self.pad = int(pad)
        self.stride = max(w for _, w in shapes) + 2 * pad
        self.row_bases = []
        row = 0
        for h, _ in shapes:
            row += pad  # zero rows above each grid (and between grids)
            self.row_bases.append(row)
            row += h
        self.size = (row + pad) * self.stride

    def positions(self, k: int) -> np.ndarray:
        """Flat positions of grid k's latents, in raster order."""
        h, w = self.shapes[k]
        ys, xs = np.mgrid[0:h, 0:w]
        return ((self.row_bases[k] + ys) * self.stride + self.pad + xs).ravel().astype(np.int32)

    def offsets(self, offsets: list[tuple[int, int]]) -> np.ndarray:
        return np.asarray([dy * self.stride + dx for dy, dx in offsets], np.int32)


class Schedule:
    """The decoding order: phases of wavefronts.

    Phase p decodes the grids `phase_grids[p]`; latent (y, x) of grid k belongs to its
    wavefront slope * y + x + lags[k]. Its wavefront s holds
    `phase_counts[p][s]` latents, whose canvas positions are the first entries of row s
    of `phase_waves[p]`; rows are padded (with the phase's first position) to the
    largest wavefront, so that every context-model evaluation has the same shape.
    """

    def __init__(
        self, canvas: Canvas, slope: int, groups: list[list[int]], lags: list[int] | None = None
    ):
        lags = [0] * len(canvas.shapes) if lags is None else lags
        self.phase_grids, self.phase_waves, self.phase_counts = [], [], []
        orders = []
        for grids in groups:
            positions, wave, grid_ids, rows = [], [], [], []
            for k in grids:
                h, w = canvas.shapes[k]
                ys, xs = np.mgrid[0:h, 0:w]
                positions.append(canvas.positions(k))
                wave.append((slope * ys + xs + lags[k]).ravel())
                grid_ids.append(np.full(h * w, k))
                rows.append(ys.ravel())
            positions, wave = np.concatenate(positions), np.concatenate(wave)
            perm = np.lexsort((np.concatenate(rows), np.concatenate(grid_ids), wave))
            order, wave = positions[perm].astype(np.int32), wave[perm]
            counts = np.bincount(wave).astype(np.int32)
            starts = np.concatenate([[0], np.cumsum(counts)])
            waves = np.full((len(counts), counts.max()), order[0], np.int32)
            column = np.arange(len(order)) - np.repeat(starts[:-1], counts)
            waves[wave, column] = order
            orders.append(order)
            self.phase_grids.append(grids)
            self.phase_waves.append(waves)
            self.phase_counts.append(counts)
        self.order = np.concatenate(orders)
        # The wavefront (over all phases) of each latent of `order`.
        counts = np.concatenate(self.phase_counts)
        self.wave_of_order = np.repeat(np.arange(len(counts)), counts)

    @property
    def num_wavefronts(self) -> int:
        return sum(len(c) for c in self.phase_counts)


def decode_groups(arch: C3Architecture) -> list[list[int]]:
    """The grids of each decoding phase, in decoding order (see the module docstring)."""
    num = len(arch.grid_shapes)
    if arch.use_prev_grid:  # grid k reads grid k - 1: finest first, one by one
        return [[k] for k in range(num)]
    if arch.inter_grid_features and not arch.pipelined_order:  # files before the pipeline
        first = list(range(arch.inter_grid_grids, num))
        return [first] + [[k] for k in reversed(range(arch.inter_grid_grids))]
    return [list(range(num))]


def wavefront_lags(arch: C3Architecture) -> list[int]:
    """Per grid, the lag of its wavefronts: with the pipelined inter-grid order, a grid
    one level coarser runs one wavefront ahead (see the module docstring)."""
    levels = arch.grid_levels
    if not arch.pipelined_order:
        return [0] * len(levels)
    return [max(levels) - level for level in levels]


def _read(source, indices):
    """tf.gather from a tensor, or from a variable without reading all of it."""
    if isinstance(source, tf.Variable):
        return source.sparse_read(indices)
    return tf.gather(source, indices)


class LatentCoder:
    """Codes the latent symbols of one architecture with its fixed-point context model."""

    # With `use_prev_grid`, the previous-grid window is read from a second canvas that
    # holds grid k - 1 resized (C3's CLIC2020 configuration); C3 video reads its previous
    # latent frame from the same canvas instead (`coding.c3.video`).
    prev_canvas_needed = True

    def __init__(self, arch: C3Architecture):
        self.arch = arch
        self.shapes = arch.grid_shapes
        offsets = context_offsets(arch.context_rows_cols, arch.context_neighbours)
        reach = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
        pad = max(reach, arch.prev_kernel_size // 2)
        self.canvas = Canvas(self.shapes, pad)
        self.schedule = Schedule(
            self.canvas, wavefront_slope(offsets), decode_groups(arch), wavefront_lags(arch)
        )
        self.offsets = self.canvas.offsets(offsets)
        self.prev_offsets = self.canvas.offsets(window_offsets(arch.prev_kernel_size))
        self.tables = lt.tables()
        self._decode_fns = {}
        if arch.pipelined_order:
            self._feature_source_tables()

    # Previous-grid features (C3's CLIC2020 configuration).

    def _prev_canvas(self, model: IntegerC3, grids: list[tf.Tensor]) -> tf.Tensor:
        """Canvas whose grid-k positions hold grid k - 1 resized to grid k (2^-16)."""
        values, positions = [], []
        for k in range(1, len(self.shapes)):
            values.append(tf.reshape(model.resize_prev(grids[k - 1], self.shapes[k]), [-1]))
            positions.append(self.canvas.positions(k))
        if not values:
            return tf.zeros([self.canvas.size], tf.float64)
        return tf.scatter_nd(
            np.concatenate(positions)[:, None], tf.concat(values, 0), [self.canvas.size]
        )

    def _contexts(self, canvas, prev_canvas, feature_canvas, positions):
        """Context-model inputs of the latents at `positions` of the canvases (tensors, or
        the decoder's variables); no features without a feature canvas."""
        context = _read(canvas, positions[:, None] + self.offsets)
        prev = features = None
        if self.arch.use_prev_grid:
            prev = _read(prev_canvas, positions[:, None] + self.prev_offsets)
        if feature_canvas is not None:
            features = _read(feature_canvas, positions)
        return context, prev, features

    # Inter-grid features (Cool-chic 5).

    def _features(self, model: IntegerC3, grid, k: int) -> tf.Tensor:
        """Grid k's inter-grid features, flat in raster order (n_k, F); `grid(j)` gives
        the symbols of grid j, read only for the coarser grids."""
        levels = self.arch.grid_levels
        grids = [grid(j) if levels[j] > levels[k] else None for j in range(len(self.shapes))]
        features = model.inter_grid_features(grids, k)
        return tf.reshape(features, (-1, self.arch.inter_grid_features))

    def _feature_source_tables(self):
        """Tables for `_feature_sources`: each canvas row's grid, each grid's first row,
        and per grid its feature inputs (grid, level difference), zero-padded."""
        levels, canvas = self.arch.grid_levels, self.canvas
        self._row_grid = np.zeros(canvas.size // canvas.stride, np.int32)
        for k, (h, _) in enumerate(self.shapes):
            self._row_grid[canvas.row_bases[k] : canvas.row_bases[k] + h] = k
        self._row_base = np.asarray(canvas.row_bases, np.int32)
        width = max(self.arch.inter_grid_input_sizes())
        self._source_grid = np.zeros((len(self.shapes), width), np.int32)
        self._source_shift = np.zeros((len(self.shapes), width), np.int32)
        self._source_valid = np.zeros((len(self.shapes), width), np.int32)
        for k in range(self.arch.inter_grid_grids):
            for i, j in enumerate(feature_inputs(levels, k)):
                self._source_grid[k, i] = j
                self._source_shift[k, i] = levels[j] - levels[k]
                self._source_valid[k, i] = 1

    def _feature_sources(self, positions: tf.Tensor):
        """Canvas positions (n, m) of the symbols that feed the inter-grid features of the
        latents at `positions`, and their grids (n,). Latent (y, x) of grid k reads
        (y >> d, x >> d) of each coarser grid, d the level difference (the nearest
        neighbour of `models.c3.intergrid`); padding and grids without features read
        position 0, a zero border."""
        stride, pad = self.canvas.stride, self.canvas.pad
        rows, cols = positions // stride, positions % stride - pad
        grids = tf.gather(self._row_grid, rows)
        ys = rows - tf.gather(self._row_base, grids)
        source = tf.gather(self._source_grid, grids)
        shift = tf.gather(self._source_shift, grids)
        y = tf.bitwise.right_shift(ys[:, None], shift)
        x = tf.bitwise.right_shift(cols[:, None], shift)
        sources = (tf.gather(self._row_base, source) + y) * stride + pad + x
        return sources * tf.gather(self._source_valid, grids), grids

    def _feature_canvas(self, model: IntegerC3, symbols: list[tf.Tensor]) -> tf.Tensor:
        """(canvas size, F): each feature grid's features at its positions, else zeros."""
        num = self.arch.inter_grid_grids
        values = [self._features(model, lambda j: symbols[j], k) for k in range(num)]
        positions = np.concatenate([self.canvas.positions(k) for k in range(num)])
        return tf.scatter_nd(
            positions[:, None],
            tf.concat(values, 0),
            [self.canvas.size, self.arch.inter_grid_features],
        )

    # Encoder.

    def coding_rows(self, model: IntegerC3, symbols: list[np.ndarray]):
        """The fixed-point context model's outputs for every latent, in decoding order
        (`schedule.order`): (table rows, rounded means, the latents' symbols). The encoder
        codes with them; a decoder computes the same ones wavefront by wavefront."""
        canvas = np.zeros(self.canvas.size, np.int32)
        for k, s in enumerate(symbols):
            if s.shape != self.shapes[k]:
                raise ValueError(f"Grid {k} has shape {s.shape}, expected {self.shapes[k]}.")
            if np.abs(s).max(initial=0) > fp.SYMBOL_LIMIT:
                raise ValueError(f"Latent symbols exceed the format's limit {fp.SYMBOL_LIMIT}.")
            canvas[self.canvas.positions(k)] = s.ravel()
        prev_canvas = feature_canvas = None
        if self.arch.use_prev_grid and self.prev_canvas_needed:
            prev_canvas = self._prev_canvas(model, [tf.constant(s) for s in symbols])
        if self.arch.inter_grid_features:
            feature_canvas = self._feature_canvas(model, [tf.constant(s) for s in symbols])
        order = self.schedule.order
        rows, rounded = [], []
        canvas_tensor = tf.constant(canvas)
        for start in range(0, len(order), _ARM_BATCH):
            positions = tf.constant(order[start : start + _ARM_BATCH])
            contexts = self._contexts(canvas_tensor, prev_canvas, feature_canvas, positions)
            r, m = model.context_rows(*contexts)
            rows.append(r.numpy())
            rounded.append(m.numpy())
        return np.concatenate(rows), np.concatenate(rounded), canvas[order]

    def encode(self, symbols: list[np.ndarray], parameters: list[np.ndarray]) -> bytes:
        """Range codes the symbols (one int array per grid) in wavefront order.

        `parameters` are the networks' (`coding.c3.networks.prepare_parameters`).
        """
        rows, rounded, values = self.coding_rows(IntegerC3(self.arch, parameters), symbols)
        values = values - rounded + self.tables.half_widths[rows]
        return self.tables.coder.encode(rows, values, self.schedule.wave_of_order)

    # Decoder.

    def _build_decoder(self, jit: bool, mode: str):
        """mode: "v2" (bounded escapes), "v1" (format version 1, plain symbols; reports
        whether an escape came up) or "v1_exact" (version 1 one latent at a time)."""
        canvas = tf.Variable(tf.zeros([self.canvas.size], tf.int32), trainable=False)
        use_prev = self.arch.use_prev_grid
        pipelined = self.arch.pipelined_order
        num_features = self.arch.inter_grid_features
        prev_canvas = feature_canvas = None  # only what the architecture reads
        if use_prev and self.prev_canvas_needed:
            prev_canvas = tf.Variable(tf.zeros([self.canvas.size], tf.float64), trainable=False)
        if num_features and not pipelined:
            feature_canvas = tf.Variable(
                tf.zeros([self.canvas.size, num_features], tf.float64), trainable=False
            )
        tables = self.tables.coder.tables()
        half_widths = tf.constant(self.tables.half_widths)
        limit = fp.SYMBOL_LIMIT
        schedule = self.schedule
        shapes = self.arch.parameter_shapes()
        num_parameters = len(shapes)
        splits = [int(np.prod(shape)) for shape in shapes]

        # One compiled call per wavefront: the contexts of its latents read from the
        # canvases (variables, read in place: passing their values would copy them on
        # every call), the context model, the coding rows. Exact arithmetic makes XLA's
        # fusion harmless: the same integers with or without it. The parameters arrive as
        # one flat vector (one argument instead of 17: the per-call overhead counts
        # thousands of times).
        @tf.function(jit_compile=jit, autograph=False)
        def wave_rows(flat_parameters, positions):
            parts = tf.split(flat_parameters, splits)
            parameters = [tf.reshape(p, shape) for p, shape in zip(parts, shapes, strict=True)]
            model = IntegerC3(self.arch, parameters)
            context, prev, features = self._contexts(canvas, prev_canvas, feature_canvas, positions)
            if pipelined:  # the features, from the symbols of coarser grids
                sources, grid_ids = self._feature_sources(positions)
                inputs = tf.clip_by_value(canvas.sparse_read(sources), -limit, limit)
                inputs = tf.cast(inputs, tf.float64)
                features = model.pointwise_inter_grid_features(inputs, grid_ids)
            rows, rounded = model.context_rows(context, prev, features)
            # Decoded symbol = coded value + this offset.
            escape = tf.gather(tables.escape_symbols, rows)  # here: compiled with the rest
            return rows, rounded - tf.gather(half_widths, rows), escape

        def grid(k):
            # Symbols beyond the format's range can only come from a damaged file.
            symbols = tf.gather(canvas, self.canvas.positions(k))
            return tf.reshape(tf.clip_by_value(symbols, -limit, limit), self.shapes[k])

        signature = [
            tf.TensorSpec([], tf.string),
            [tf.TensorSpec(None, tf.float64)] * num_parameters,
        ]

        @tf.function(input_signature=signature, autograph=False)
        def decode(string, parameters):
            model = IntegerC3(self.arch, parameters)
            flat_parameters = tf.concat([tf.reshape(p, [-1]) for p in parameters], axis=0)
            canvas.assign(tf.zeros_like(canvas))
            handle = tfc.create_range_decoder(string, tables.lookup)
            flag = tf.constant(mode == "v1_exact")  # v1: an escape came up; else: all valid
            for grids, waves, counts in zip(
                schedule.phase_grids, schedule.phase_waves, schedule.phase_counts, strict=True
            ):
                if prev_canvas is not None and grids[0] > 0:
                    k = grids[0]
                    resized = model.resize_prev(grid(k - 1), self.shapes[k])
                    prev_canvas.scatter_nd_update(
                        self.canvas.positions(k)[:, None], tf.reshape(resized, [-1])
                    )
                if num_features and not pipelined and grids[0] < self.arch.inter_grid_grids:
                    k = grids[0]  # its coarser grids are decoded: its features are known
                    feature_canvas.scatter_nd_update(
                        self.canvas.positions(k)[:, None], self._features(model, grid, k)
                    )
                num_steps = len(counts)
                waves, counts = tf.constant(waves), tf.constant(counts)

                def body(step, handle, flag, waves=waves, counts=counts):
                    padded = waves[step]
                    rows, offsets, escape = wave_rows(flat_parameters, padded)
                    n = counts[step]
                    rows, offsets, positions, escape = rows[:n], offsets[:n], padded[:n], escape[:n]
                    if mode == "v2":
                        handle, coded = Coder.decode_group(handle, tables, rows, n, escape)
                    elif mode == "v1":
                        handle, coded = tfc.entropy_decode_index(handle, rows, n[None], tf.int32)
                        flag = tf.logical_or(flag, tf.reduce_any(tf.equal(coded, escape)))
                    else:
                        handle, coded, good = Coder.decode_v1_group(handle, tables, rows, n)
                        flag = tf.logical_and(flag, good)
                    values = coded + offsets
                    update = canvas.scatter_nd_update(positions[:, None], values)
                    # The next wavefront reads the canvas: it must see this update.
                    with tf.control_dependencies([update]):
                        return tf.identity(step + 1), tf.identity(handle), tf.identity(flag)

                _, handle, flag = tf.while_loop(
                    lambda step, *_, n=num_steps: step < n,
                    body,
                    (tf.constant(0), handle, flag),
                )
            ok = tfc.entropy_decode_finalize(handle)
            with tf.control_dependencies([ok]):
                return [grid(k) for k in range(len(self.shapes))], ok, flag

        return decode

    def _decode(self, string: bytes, parameters, jit: bool, mode: str):
        if (jit, mode) not in self._decode_fns:
            self._decode_fns[jit, mode] = self._build_decoder(jit, mode)
        grids, ok, flag = self._decode_fns[jit, mode](tf.constant(string), parameters)
        return grids, bool(ok.numpy()), bool(flag.numpy())

    def decode(
        self, string: bytes, parameters: list[np.ndarray], jit: bool = True, version: int = 2
    ) -> tuple[list[tf.Tensor], bool]:
        """Decodes the symbols of every grid; also returns tfc's (weak) sanity flag.

        `jit` compiles the context model with XLA (faster on a CPU; the same integers).
        `version` is the file's format version. The compiled decoder is kept per
        architecture and reused for every file.
        """
        parameters = [tf.constant(p, tf.float64) for p in parameters]
        if version >= 2:
            grids, ok, _ = self._decode(string, parameters, jit, "v2")
            return grids, ok
        grids, ok, escaped = self._decode(string, parameters, jit, "v1")
        if escaped:  # tfc's escape code: read it again, one latent at a time
            grids, ok, valid = self._decode(string, parameters, jit, "v1_exact")
            if not valid:
                raise BitstreamError("latent section: invalid escape code (damaged file).")
        return grids, ok
