"""C3 video bitstreams: the patches of a video -> bytes -> the decoded frames.

A patch's decoder is the image codec's, in 3-D (`models.c3.video`):
- the architecture is the image header of one frame (`C3Architecture`, with the
  "previous grid" window read from the previous latent frame) plus the patch's number of
  frames and temporal downsampling factor (`VideoArchitecture`);
- the networks are coded as the image codec's (`coding.weights`);
- the latents are range coded in a 3-D wavefront order (`VideoLatentCoder`): each latent
  frame of each grid is a frame of the image coder's canvas, preceded by a zero frame
  before the grid's first; latent (t, y, x) belongs to wavefront s y + x + t L with
  L = (s + 1) P + 1 (P = half the previous-frame window), so every latent of the previous
  frame's window is decoded a wavefront earlier, and all grids and frames share the
  wavefronts: (s (h - 1) + w) + (t - 1) L + 1 steps for the finest grid instead of t
  times a frame's, with one fixed-point context-model call per wavefront;
- the synthesis is the image decoder's per-pixel MLP and per-frame residual
  convolutions (`IntegerC3.synthesis_from_upsampled`) after a fixed-point trilinear
  upsampling (time, rows, columns at 2^-8 each, rounded back to 2^-16: exact for
  power-of-two size ratios).

File = container codec "c3_video": header = the video's frames, height, width, the
patch size (u16 each), the colour space (u8: RGB, or Y'CbCr 4:4:4 converted to RGB after
decoding), the number of patches n and each one's index (u16 each); the patches in that
order, ceil(n / 255) per section (so that a section's checksum covers few), each one
varint length + payload; payload = varint length + `VideoArchitecture` bytes, varint
length + network section, latent section. A full file holds every patch (raster order:
time, rows, columns); a patch file (one Slurm task's output) holds some, and `merge`
joins them. The decoder checks every patch's size against the geometry and needs all
patches to write a video.
"""

import dataclasses
import functools
import math
import time

import numpy as np
import tensorflow as tf

from coding import fixed_point as fp
from coding import laplace_tables as lt
from coding import weights
from coding.c3.networks import (
    MAX_PIXELS,
    C3Architecture,
    IntegerC3,
    compiled_key,
    prepare_parameters,
    resize_fixed,
    to_pixels,
)
from coding.c3.wavefront import Canvas, LatentCoder, Schedule, _read
from coding.container import MAX_SECTIONS, Container, Reader, encode_varint, pack_u16, parse
from common.errors import BitstreamError
from common.video import yuv_to_rgb
from models.c3.context import context_offsets, wavefront_slope, window_offsets
from models.c3.video import TIME_FACTORS, video_grid_shapes

MAX_FRAMES = 65535
MAX_PATCHES = 65535  # of one file (u16 indices), grouped into at most MAX_SECTIONS sections


@dataclasses.dataclass(frozen=True)
class VideoArchitecture:
    """A patch's decoder: its frames, the temporal factor and one frame's C3 header."""

    frames: int
    time_factor: int
    frame: C3Architecture

    @classmethod
    def from_model(cls, model, weight_step: float, bias_step: float) -> "VideoArchitecture":
        """From a fitted `C3VideoModel` and its network steps."""
        frame = C3Architecture.from_model_config(model.frame_config(), weight_step, bias_step)
        return cls(model.frames, model.get_config()["time_factor"], frame)

    @property
    def grid_shapes(self) -> list[tuple[int, int, int]]:
        f = self.frame
        return video_grid_shapes(self.frames, f.height, f.width, f.num_grids, self.time_factor)

    @property
    def size(self) -> tuple[int, int, int]:
        return (self.frames, self.frame.height, self.frame.width)

    def problem(self) -> str | None:
        f = self.frame
        checks = [
            (1 <= self.frames <= MAX_FRAMES, "number of frames"),
            (self.time_factor in TIME_FACTORS, "temporal factor"),
            (self.frames * f.height * f.width <= MAX_PIXELS, f"more than {MAX_PIXELS} pixels"),
            (f.use_prev_grid, "previous-frame context"),
            (not f.learned_upsampling, "upsampling"),
            (not (f.inter_grid_features or f.num_hyperlatents), "inter-grid context"),
            (not f.context_neighbours and not f.arm_residual, "context model"),
            (not f.lossless and not f.separate_arm_steps, "frame header"),
        ]
        for ok, what in checks:
            if not ok:
                return f"invalid {what}"
        return None

    def to_bytes(self) -> bytes:
        return pack_u16(self.frames) + bytes([self.time_factor]) + self.frame.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> "VideoArchitecture":
        r = Reader(data, f"{what} (C3 video header)")
        frames, time_factor = r.u16("frames"), r.u8("temporal factor")
        frame = C3Architecture.from_bytes(r.take(r.remaining(), "frame header"), what)
        arch = cls(frames, time_factor, frame)
        problem = arch.problem()
        if problem:
            raise BitstreamError(f"{what}: C3 video header has an {problem}.")
        return arch


class VideoLatentCoder(LatentCoder):
    """Codes the 3-D latent grids of one patch architecture in 3-D wavefront order (see
    the module docstring): the image coder with frames of latents on its canvas."""

    prev_canvas_needed = False  # the previous latent frame is on the same canvas

    def __init__(self, video: VideoArchitecture):
        # Not LatentCoder.__init__: the canvas, schedule and offsets are the video's.
        self.video = video
        self.arch = arch = video.frame
        offsets = context_offsets(arch.context_rows_cols)
        half = arch.prev_kernel_size // 2
        pad = max(arch.context_rows_cols, half)
        slope = wavefront_slope(offsets)
        frame_lag = (slope + 1) * half + 1
        shapes, self.slots, lags = [], [], []
        for t, h, w in video.grid_shapes:
            shapes.append((h, w))  # the zero frame before the grid's first
            lags.append(0)
            self.slots.append(list(range(len(shapes), len(shapes) + t)))
            shapes += [(h, w)] * t
            lags += [i * frame_lag for i in range(t)]
        self.shapes = shapes
        self.canvas = Canvas(shapes, pad)
        frames = [slot for slots in self.slots for slot in slots]
        self.schedule = Schedule(self.canvas, slope, [frames], lags)
        self.offsets = self.canvas.offsets(offsets)
        self.prev_offsets = self.canvas.offsets(window_offsets(arch.prev_kernel_size))
        # Per canvas row: the flat shift to the same row of the previous frame.
        rows = self.canvas.size // self.canvas.stride
        self._frame_shift = np.zeros(rows, np.int32)
        for slot in frames:
            base, previous = self.canvas.row_bases[slot], self.canvas.row_bases[slot - 1]
            shift = (previous - base) * self.canvas.stride
            self._frame_shift[base : base + shapes[slot][0]] = shift
        self.tables = lt.tables()
        self._decode_fns = {}

    def _contexts(self, canvas, prev_canvas, feature_canvas, positions):
        """Causal symbols of the latent's frame, and the previous frame's window at the
        scale of the image coder's resized previous grid (2^-16)."""
        context = _read(canvas, positions[:, None] + self.offsets)
        shift = tf.gather(self._frame_shift, positions // self.canvas.stride)
        prev = _read(canvas, (positions + shift)[:, None] + self.prev_offsets)
        prev = tf.cast(tf.clip_by_value(prev, -fp.SYMBOL_LIMIT, fp.SYMBOL_LIMIT), tf.float64)
        return context, prev * 2.0 ** (2 * fp.UPSAMPLING_BITS), None

    def canvas_grids(self, grids: list[np.ndarray]) -> list[np.ndarray]:
        """3-D grids -> the canvas's frames (zero frames included)."""
        out = []
        for grid, (t, h, w) in zip(grids, self.video.grid_shapes, strict=True):
            if grid.shape != (t, h, w):
                raise ValueError(f"A grid has shape {grid.shape}, expected {(t, h, w)}.")
            out += [np.zeros((h, w), np.int32)] + [np.asarray(f, np.int32) for f in grid]
        return out

    def encode_grids(self, grids: list[np.ndarray], parameters: list[np.ndarray]) -> bytes:
        return self.encode(self.canvas_grids(grids), parameters)

    def decode_grids(self, string: bytes, parameters: list[np.ndarray], jit: bool = True):
        """The 3-D grids of symbols, and tfc's (weak) sanity flag."""
        frames, ok = self.decode(string, parameters, jit)
        grids = [tf.stack([frames[slot] for slot in slots]).numpy() for slots in self.slots]
        return grids, ok


def trilinear_fixed(grid: tf.Tensor, size: tuple[int, int, int]) -> tf.Tensor:
    """Integer symbols (t, h, w) -> (T, H, W) at 2^-16: linear along time, rows, columns
    (2^-8 each, `resize_fixed`), then rounded from 2^-24 to 2^-16 (exact for
    power-of-two ratios, whose weights are multiples of 2^-2 per axis)."""
    return fp.round_shift(resize_fixed(grid, size), fp.UPSAMPLING_BITS)


def latent_coder(video: VideoArchitecture) -> VideoLatentCoder:
    """One coder (and compiled decoder) per patch architecture (steps aside), as
    `coding.c3.codec.latent_coder` for images."""
    return _latent_coder(dataclasses.replace(video, frame=compiled_key(video.frame)))


@functools.lru_cache(maxsize=8)
def _latent_coder(video: VideoArchitecture) -> VideoLatentCoder:
    return VideoLatentCoder(video)


@functools.lru_cache(maxsize=8)
def _synthesis_fn(video: VideoArchitecture, jit: bool):
    def fn(parameters, grids):
        model = IntegerC3(video.frame, parameters)
        upsampled = tf.stack([trilinear_fixed(g, video.size) for g in grids], axis=-1)
        return to_pixels(model.synthesis_from_upsampled(upsampled))

    return tf.function(fn, jit_compile=jit, autograph=False)


def synthesize(video: VideoArchitecture, parameters, grids, jit: bool = True) -> np.ndarray:
    """The decoded patch (T, H, W, 3) uint8 of the given symbols; exact integers."""
    parameters = [tf.constant(p, tf.float64) for p in parameters]
    key = dataclasses.replace(video, frame=compiled_key(video.frame))
    return _synthesis_fn(key, jit)(parameters, [tf.constant(g) for g in grids]).numpy()


@dataclasses.dataclass
class EncodedPatch:
    payload: bytes  # the patch's section
    bits_header: int  # its architecture, lengths and per-tensor code bytes
    bits_networks: int
    bits_latents: int
    seconds: float


def encode_patch(model, weight_step: float, bias_step: float) -> EncodedPatch:
    """The section of a fitted `C3VideoModel` whose networks are quantised."""
    start = time.perf_counter()
    with tf.device(fp.EXACT_DEVICE):
        arch = VideoArchitecture.from_model(model, weight_step, bias_step)
        problem = arch.problem()
        if problem:
            raise ValueError(f"This model cannot be written as a C3 video patch: {problem}.")
        header = arch.to_bytes()
        # The decoder sees the header's values (float32 fields): so must the encoder.
        arch = VideoArchitecture.from_bytes(header, "encoder")
        integers = model.network_integers(weight_step, bias_step)
        parameters = prepare_parameters(arch.frame, integers)
        symbols = [np.clip(s, -fp.SYMBOL_LIMIT, fp.SYMBOL_LIMIT) for s in model.symbols()]
        networks = weights.encode_networks(integers)
        latents = latent_coder(arch).encode_grids(symbols, parameters)
    payload = encode_varint(len(header)) + header + encode_varint(len(networks)) + networks
    payload += latents
    bits_networks = 8 * (len(networks) - len(integers))
    return EncodedPatch(
        payload=payload,
        bits_header=8 * len(payload) - bits_networks - 8 * len(latents),
        bits_networks=bits_networks,
        bits_latents=8 * len(latents),
        seconds=time.perf_counter() - start,
    )


def _split_patch(payload: bytes, what: str) -> tuple[VideoArchitecture, bytes, bytes]:
    """(architecture, network section, latent section) of a patch payload."""
    r = Reader(payload, what)
    arch = VideoArchitecture.from_bytes(r.take(r.varint("header length"), "header"), what)
    network_section = r.take(r.varint("network length"), "networks")
    return arch, network_section, r.take(r.remaining(), "latents")


def decode_patch(payload: bytes, jit: bool = True, what: str = "patch") -> np.ndarray:
    """A patch payload -> its frames (T, H, W, 3) uint8; BitstreamError if invalid."""
    arch, network_section, latent_section = _split_patch(payload, what)
    with tf.device(fp.EXACT_DEVICE):
        integers = weights.decode_networks(network_section, arch.frame.network_shapes())
        try:
            parameters = prepare_parameters(arch.frame, integers)
        except ValueError as e:
            raise BitstreamError(f"{what}: network section: {e}.") from None
        try:
            grids, _ = latent_coder(arch).decode_grids(latent_section, parameters, jit)
        except tf.errors.OpError as e:
            raise BitstreamError(f"{what}: latents cannot be decoded ({e.message}).") from None
        return synthesize(arch, parameters, grids, jit)


# Patches and the file.


def patch_boxes(size: tuple[int, int, int], patch: tuple[int, int, int]) -> list[tuple]:
    """Every patch's (t0, t1, y0, y1, x0, x1) in raster order (time, rows, columns);
    patches at the far edges are smaller."""
    counts = [math.ceil(n / p) for n, p in zip(size, patch, strict=True)]
    boxes = []
    for i in range(counts[0]):
        for j in range(counts[1]):
            for k in range(counts[2]):
                starts = (i * patch[0], j * patch[1], k * patch[2])
                ends = [min(s + p, n) for s, p, n in zip(starts, patch, size, strict=True)]
                boxes.append((starts[0], ends[0], starts[1], ends[1], starts[2], ends[2]))
    return boxes


def _split_payloads(section: bytes, what: str) -> list[bytes]:
    r = Reader(section, what)
    payloads = []
    while r.remaining():
        payloads.append(r.take(r.varint("patch length"), "patch"))
    return payloads


# The colour space the patches code (a header byte): RGB, or BT.601 limited-range
# Y'CbCr 4:4:4 (`common.video.rgb_to_yuv`), converted to RGB after decoding.
COLOURS = ("rgb", "yuv")


@dataclasses.dataclass(frozen=True)
class VideoFile:
    size: tuple[int, int, int]  # frames, height, width of the whole video
    patch: tuple[int, int, int]
    sections: dict[int, bytes]  # patch index -> its payload
    colour: str = "rgb"

    @property
    def num_patches(self) -> int:
        return math.prod(math.ceil(n / p) for n, p in zip(self.size, self.patch, strict=True))

    @property
    def complete(self) -> bool:
        return sorted(self.sections) == list(range(self.num_patches))

    def to_bytes(self) -> bytes:
        indices = sorted(self.sections)
        if not 0 < len(indices) <= MAX_PATCHES or indices[-1] >= self.num_patches:
            raise ValueError(f"A C3 video file holds 1 to {MAX_PATCHES} of its patches.")
        header = b"".join(pack_u16(n) for n in (*self.size, *self.patch))
        header += bytes([COLOURS.index(self.colour)]) + pack_u16(len(indices))
        header += b"".join(pack_u16(i) for i in indices)
        per = math.ceil(len(indices) / MAX_SECTIONS)
        sections = tuple(
            b"".join(
                encode_varint(len(self.sections[i])) + self.sections[i]
                for i in indices[start : start + per]
            )
            for start in range(0, len(indices), per)
        )
        return Container("c3_video", header, sections).to_bytes()

    @classmethod
    def parse(cls, data: bytes, what: str = "bitstream") -> "VideoFile":
        container = parse(data, what)
        if container.codec != "c3_video":
            raise BitstreamError(f"{what}: codec {container.codec!r} is not C3 video.")
        r = Reader(container.header, f"{what} (video header)")
        values = [r.u16(field) for field in ("frames", "height", "width", "t", "h", "w")]
        size, patch = tuple(values[:3]), tuple(values[3:])
        if min(values) < 1:
            raise BitstreamError(f"{what}: invalid video or patch size {size}, {patch}.")
        colour = r.u8("colour space")
        if colour >= len(COLOURS):
            raise BitstreamError(f"{what}: unknown colour space {colour}.")
        indices = [r.u16("patch index") for _ in range(r.u16("number of patches"))]
        r.expect_end()
        per = math.ceil(len(indices) / MAX_SECTIONS) if indices else 1
        payloads = [
            p
            for i, s in enumerate(container.sections)
            for p in _split_payloads(s, f"{what} section {i}")
        ]
        if len(payloads) != len(indices) or len(container.sections) != math.ceil(
            len(indices) / per
        ):
            raise BitstreamError(f"{what}: {len(payloads)} patches for {len(indices)} indices.")
        video = cls(size, patch, dict(zip(indices, payloads, strict=True)), COLOURS[colour])
        if video.num_patches > MAX_PATCHES:
            raise BitstreamError(f"{what}: {video.num_patches} patches (at most {MAX_PATCHES}).")
        if not indices or len(set(indices)) != len(indices) or max(indices) >= video.num_patches:
            raise BitstreamError(f"{what}: invalid patch indices.")
        return video


def merge(files: list[bytes], what: str = "patch files") -> bytes:
    """Joins patch files of one video (same size and patch size) into one file."""
    parsed = [VideoFile.parse(data, f"{what} {i}") for i, data in enumerate(files)]
    if not parsed:
        raise BitstreamError(f"{what}: nothing to merge.")
    first = parsed[0]
    sections = {}
    for video in parsed:
        if (video.size, video.patch, video.colour) != (first.size, first.patch, first.colour):
            raise BitstreamError(
                f"{what}: the files are of different videos or patch sizes "
                f"({video.size}/{video.patch} vs {first.size}/{first.patch})."
            )
        for index, section in video.sections.items():
            if index in sections and sections[index] != section:
                raise BitstreamError(f"{what}: two different files for patch {index}.")
            sections[index] = section
    return VideoFile(first.size, first.patch, sections, first.colour).to_bytes()


def decode(data: bytes, jit: bool = True, what: str = "bitstream") -> np.ndarray:
    """A complete C3 video file -> its frames (T, H, W, 3) uint8."""
    video = VideoFile.parse(data, what)
    if not video.complete:
        missing = sorted(set(range(video.num_patches)) - set(video.sections))
        raise BitstreamError(
            f"{what}: {len(missing)} of {video.num_patches} patches missing "
            f"(e.g. {missing[:5]}); join the patch files with `codec.py merge`."
        )
    boxes = patch_boxes(video.size, video.patch)
    # Every patch header agrees with the geometry before any work: the decoding work and
    # the frames' memory are then bounded by the patches' (checked) headers.
    for index, (t0, t1, y0, y1, x0, x1) in enumerate(boxes):
        arch = _split_patch(video.sections[index], f"{what} patch {index}")[0]
        if arch.size != (t1 - t0, y1 - y0, x1 - x0):
            raise BitstreamError(
                f"{what}: patch {index} is {arch.size}, the geometry says "
                f"{(t1 - t0, y1 - y0, x1 - x0)}."
            )
    frames = np.zeros((*video.size, 3), np.uint8)
    for index, (t0, t1, y0, y1, x0, x1) in enumerate(boxes):
        frames[t0:t1, y0:y1, x0:x1] = decode_patch(
            video.sections[index], jit, f"{what} patch {index}"
        )
    if video.colour == "yuv":  # elementwise IEEE arithmetic: the same on every machine
        frames = yuv_to_rgb(frames)
    return frames
