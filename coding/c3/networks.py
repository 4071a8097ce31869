"""C3's decoder in fixed point: the context model, upsampling and synthesis of a bitstream.

The architecture (`C3Architecture`) is what the bitstream header carries: everything the
decoder needs to rebuild the networks, and nothing else. `IntegerC3` evaluates them with
`coding.fixed_point`, so the encoder and every decoder compute the same probabilities and
the same pixels, whatever the machine, thread count or XLA setting.

Differences from the float model that was fitted (`models.c3.model.C3Model`), all below
the 8-bit output precision and the table resolution of the coder: activations are rounded
to 2^-12, GELU is interpolated from a table, bilinear weights are rounded to 2^-8 (exact
for power-of-two size ratios), and q_step is applied as a 16-bit fixed-point multiplier.
"""

import dataclasses
import fractions
import functools
import math

import numpy as np
import tensorflow as tf

from coding import fixed_point as fp
from coding import laplace_tables as lt
from coding.c3 import presets
from coding.container import FORMAT_VERSION, Reader, f32, pack_f32, pack_u16
from common.errors import BitstreamError
from models.c3 import upsampling
from models.c3.context import PRIORITY_OFFSETS, context_offsets
from models.c3.intergrid import feature_inputs, nearest_from_level, stacked_inputs
from models.c3.latents import all_grid_shapes, grid_levels
from models.c3.lossless import CONTEXT_OUTPUTS, context_outputs
from models.c3.lossless import NUM_OUTPUTS as NUM_LOSSLESS_OUTPUTS
from models.c3.synthesis import edge_pad

MAX_PIXELS = 2**26  # 8192 x 8192: bounds the decoder's work and memory
MAX_GRIDS = 12
MAX_LAYERS = 8
MAX_KERNEL = 7
MAX_STEP_BITS = 24
MAX_FEATURES = 32
# The network steps' fields, at their values for "no steps": a compiled decoder does not
# depend on them (`compiled_key`), and a preset leaves them, with the image size, to each
# file (`coding.c3.presets`).
_NO_STEPS = dict(
    weight_bits=0,
    bias_bits=0,
    upsampling_bits=0,
    separate_arm_steps=False,
    arm_weight_bits=0,
    arm_bias_bits=0,
    separate_pixel_steps=False,
    pixel_weight_bits=0,
    pixel_bias_bits=0,
    step_shifts=(),
)
_SIZE_AND_STEPS = ("height", "width", *_NO_STEPS)
# Per-tensor steps (`C3Architecture.step_shifts`): each tensor's step is its module's
# times 2^-shift, shift in [MIN_STEP_SHIFT, MAX_STEP_SHIFT] (a 4-bit field).
MIN_STEP_SHIFT, MAX_STEP_SHIFT = -8, 7


@dataclasses.dataclass(frozen=True)
class C3Architecture:
    """The decoder's view of a C3 model: sizes, layer widths and quantisation steps."""

    height: int
    width: int
    num_grids: int
    q_step: float
    synthesis_hidden: tuple[int, ...]
    num_residual_layers: int
    residual_kernel_size: int
    arm_hidden: tuple[int, ...]
    context_rows_cols: int
    use_prev_grid: bool
    prev_kernel_size: int
    shift_log_scale: float
    scale_range: tuple[float, float]
    gelu_approximate: bool
    weight_bits: int  # network weight step 2^-weight_bits
    bias_bits: int  # network bias step 2^-bias_bits
    # Cool-chic 5's learned upsampling (header flag bit 2) instead of bilinear resizing,
    # its taps at the step 2^-upsampling_bits (a header byte when the flag is set).
    learned_upsampling: bool = False
    upsampling_bits: int = 0
    # Per-module network steps (Cool-chic 5, header flag bit 3): the context model's own
    # weight and bias steps (two header bytes when the flag is set); weight_bits and
    # bias_bits are then the synthesis's. Without the flag one pair serves both.
    separate_arm_steps: bool = False
    arm_weight_bits: int = 0
    arm_bias_bits: int = 0
    # Cool-chic 5's synthesis choices: ReLU in place of GELU in the synthesis (header flag
    # bit 4) and a linear 1x1 stabiliser from the latents to the output (flag bit 5; its
    # kernel and bias follow the residual layers' in the parameters).
    synthesis_relu: bool = False
    synthesis_stabiliser: bool = False
    # Cool-chic 5's inter-grid context and hyperlatents (header flag bit 6, then three
    # bytes: hyperlatents, features, feature grids; `models.c3.intergrid`). The grids
    # are decoded coarse to fine; the feature layers' parameters follow the context
    # model's and share its steps.
    num_hyperlatents: int = 0
    inter_grid_features: int = 0
    inter_grid_grids: int = 0
    # Cool-chic 5's context model (header flag bit 7, then two bytes): its first N
    # priority-ordered neighbours (0: the raster window) and residual ReLU layers with a
    # linear stabiliser (its kernel and bias follow the output layer's).
    context_neighbours: int = 0
    arm_residual: bool = False
    # With the inter-grid context: all grids decoded in one pipelined wavefront order
    # (second flags byte, bit 1; `coding.c3.wavefront`), in every file written since it
    # exists; older inter-grid files, without the bit, decode in coarse-to-fine phases.
    pipelined_order: bool = False
    # Lossless C3 (second flags byte, bit 2; `models.c3.lossless`): the synthesis outputs
    # each pixel's distribution (9 channels) and the pixels follow in the file
    # (`coding.c3.lossless`).
    lossless: bool = False
    # Lossless C3's causal pixel context (second flags byte, bit 3, then the number of
    # neighbours, the depth and the hidden widths; `models.c3.lossless.PixelContext`):
    # per-pixel layers after the synthesis's, at the synthesis's steps.
    pixel_neighbours: int = 0
    pixel_hidden: tuple[int, ...] = ()
    # The pixel context's own weight and bias steps (second flags byte, bit 4, then two
    # bytes after the pixel context's shape); without the flag it has the synthesis's.
    separate_pixel_steps: bool = False
    pixel_weight_bits: int = 0
    pixel_bias_bits: int = 0
    # Per-tensor network steps (preset header: bit 6 of the weight step byte; explicit
    # header: second flags byte, bit 5; then one 4-bit field per tensor): tensor i of
    # `network_shapes()` has the step of its module (above) times 2^-step_shifts[i].
    # Empty: every tensor at its module's step.
    step_shifts: tuple[int, ...] = ()

    @property
    def arm_bits(self) -> tuple[int, int]:
        """The context model's (weight bits, bias bits)."""
        if self.separate_arm_steps:
            return self.arm_weight_bits, self.arm_bias_bits
        return self.weight_bits, self.bias_bits

    @property
    def pixel_bits(self) -> tuple[int, int]:
        """Lossless C3's pixel context's (weight bits, bias bits)."""
        if self.separate_pixel_steps:
            return self.pixel_weight_bits, self.pixel_bias_bits
        return self.weight_bits, self.bias_bits

    @classmethod
    def from_model_config(
        cls,
        config: dict,
        weight_step: float,
        bias_step: float,
        upsampling_step=None,
        arm_steps: tuple[float, float] | None = None,
        pixel_steps: tuple[float, float] | None = None,
        step_shifts: tuple[int, ...] | None = None,
    ):
        """From `C3Model.get_config()` and the network quantisation steps (the learned
        upsampling's step is the weight step when None; `arm_steps`, the context model's
        (weight, bias) steps, and `pixel_steps`, lossless C3's pixel context's, are the
        synthesis's when None; `step_shifts`, one per tensor, refine those per tensor,
        None or all zero: none)."""
        learned = config.get("upsampling", "bilinear") == "learned"
        upsampling_step = weight_step if upsampling_step is None else upsampling_step
        arm = arm_steps is not None
        pixel = pixel_steps is not None
        pixel_bits = (
            (fp.step_bits(pixel_steps[0], "pixel context weight step"),
             fp.step_bits(pixel_steps[1], "pixel context bias step"))
            if pixel
            else (0, 0)
        )  # fmt: skip
        arch = cls(
            height=int(config["height"]),
            width=int(config["width"]),
            num_grids=int(config["num_grids"]),
            q_step=f32(config["q_step"]),
            synthesis_hidden=tuple(int(w) for w in config["synthesis_hidden"]),
            num_residual_layers=int(config["num_residual_layers"]),
            residual_kernel_size=int(config["residual_kernel_size"]),
            arm_hidden=tuple(int(w) for w in config["arm_hidden"]),
            context_rows_cols=int(config["context_rows_cols"]),
            use_prev_grid=bool(config["use_prev_grid"]),
            prev_kernel_size=int(config["prev_kernel_size"]),
            shift_log_scale=f32(config["shift_log_scale"]),
            scale_range=tuple(f32(s) for s in config["scale_range"]),
            gelu_approximate=bool(config["gelu_approximate"]),
            weight_bits=fp.step_bits(weight_step, "weight step"),
            bias_bits=fp.step_bits(bias_step, "bias step"),
            learned_upsampling=learned,
            upsampling_bits=fp.step_bits(upsampling_step, "upsampling step") if learned else 0,
            separate_arm_steps=arm,
            arm_weight_bits=fp.step_bits(arm_steps[0], "context model weight step") if arm else 0,
            arm_bias_bits=fp.step_bits(arm_steps[1], "context model bias step") if arm else 0,
            synthesis_relu=config.get("synthesis_activation", "gelu") == "relu",
            synthesis_stabiliser=bool(config.get("synthesis_stabiliser", False)),
            num_hyperlatents=int(config.get("num_hyperlatents", 0)),
            inter_grid_features=int(config.get("inter_grid_features", 0)),
            inter_grid_grids=(
                int(config.get("inter_grid_grids", 0)) if config.get("inter_grid_features") else 0
            ),
            context_neighbours=int(config.get("context_neighbours", 0)),
            arm_residual=bool(config.get("arm_residual", False)),
            pipelined_order=bool(config.get("inter_grid_features")),
            lossless=config.get("output", "image") == "lossless",
            pixel_neighbours=int(config.get("pixel_neighbours", 0)),
            pixel_hidden=(
                tuple(int(w) for w in config.get("pixel_hidden", ()))
                if config.get("pixel_neighbours")
                else ()
            ),
            separate_pixel_steps=pixel,
            pixel_weight_bits=pixel_bits[0],
            pixel_bias_bits=pixel_bits[1],
            step_shifts=tuple(int(k) for k in step_shifts) if any(step_shifts or ()) else (),
        )
        problem = arch.problem()
        if problem:
            raise ValueError(f"This model cannot be written as a bitstream: {problem}.")
        return arch

    def problem(self) -> str | None:
        """What makes this architecture invalid for the format, or None."""
        checks = [
            (1 <= self.height <= 65535 and 1 <= self.width <= 65535, "image size"),
            (self.height * self.width <= MAX_PIXELS, f"more than {MAX_PIXELS} pixels"),
            (1 <= self.num_grids <= MAX_GRIDS, "number of grids"),
            (math.isfinite(self.q_step) and 2**-10 <= self.q_step <= 16, "q_step"),
            (len(self.synthesis_hidden) <= MAX_LAYERS, "synthesis depth"),
            (len(self.arm_hidden) <= MAX_LAYERS, "context model depth"),
            (all(1 <= w <= 255 for w in self.synthesis_hidden + self.arm_hidden), "widths"),
            (0 <= self.num_residual_layers <= MAX_LAYERS, "residual layers"),
            (self.residual_kernel_size in (1, 3, 5, 7), "residual kernel size"),
            (1 <= self.context_rows_cols <= MAX_KERNEL, "context size"),
            (self.prev_kernel_size in (1, 3, 5, 7), "previous-grid kernel size"),
            (math.isfinite(self.shift_log_scale) and abs(self.shift_log_scale) < 64, "shift"),
            (all(math.isfinite(s) for s in self.scale_range), "scale range"),
            (0 < self.scale_range[0] < self.scale_range[1] <= 1e6, "scale range"),
            (0 <= self.weight_bits <= MAX_STEP_BITS, "weight step"),
            (0 <= self.bias_bits <= MAX_STEP_BITS, "bias step"),
            (0 <= self.upsampling_bits <= MAX_STEP_BITS, "upsampling step"),
            (self.learned_upsampling or self.upsampling_bits == 0, "upsampling step"),
            (fp.ACTIVATION_BITS + self.weight_bits >= self.bias_bits, "bias step too fine"),
            (0 <= self.arm_weight_bits <= MAX_STEP_BITS, "context model weight step"),
            (0 <= self.arm_bias_bits <= MAX_STEP_BITS, "context model bias step"),
            (self.separate_arm_steps or self.arm_weight_bits == self.arm_bias_bits == 0, "steps"),
            (fp.ACTIVATION_BITS + self.arm_bits[0] >= self.arm_bits[1], "bias step too fine"),
            (0 <= self.num_hyperlatents <= self.num_grids, "number of hyperlatents"),
            (0 <= self.inter_grid_features <= MAX_FEATURES, "number of inter-grid features"),
            (
                0 < self.inter_grid_grids < self.num_grids
                if self.inter_grid_features
                else self.inter_grid_grids == self.num_hyperlatents == 0,
                "inter-grid context",
            ),
            (not (self.inter_grid_features and self.use_prev_grid), "inter-grid context"),
            (0 <= self.context_neighbours <= len(PRIORITY_OFFSETS), "context neighbours"),
            (self.inter_grid_features or not self.pipelined_order, "decode order"),
            (
                not self.arm_residual or all(w == self.num_context_inputs for w in self.arm_hidden),
                "residual context model widths",
            ),
            (0 <= self.pixel_neighbours <= len(PRIORITY_OFFSETS), "pixel neighbours"),
            (self.lossless or not self.pixel_neighbours, "pixel context"),
            (bool(self.pixel_neighbours) or not self.pixel_hidden, "pixel context"),
            (len(self.pixel_hidden) <= MAX_LAYERS, "pixel context depth"),
            (all(1 <= w <= 255 for w in self.pixel_hidden), "pixel context widths"),
            (0 <= self.pixel_weight_bits <= MAX_STEP_BITS, "pixel context weight step"),
            (0 <= self.pixel_bias_bits <= MAX_STEP_BITS, "pixel context bias step"),
            (
                bool(self.pixel_neighbours)
                if self.separate_pixel_steps
                else self.pixel_weight_bits == self.pixel_bias_bits == 0,
                "pixel context steps",
            ),
            (fp.ACTIVATION_BITS + self.pixel_bits[0] >= self.pixel_bits[1], "bias step too fine"),
        ]
        for ok, what in checks:
            if not ok:
                return f"invalid {what}"
        return self._step_shifts_problem()

    def _step_shifts_problem(self) -> str | None:
        """What is wrong with the per-tensor steps (checked once the shapes are valid)."""
        if not self.step_shifts:
            return None
        if len(self.step_shifts) != len(self.network_shapes()):
            return "invalid number of per-tensor steps"
        if not all(MIN_STEP_SHIFT <= k <= MAX_STEP_SHIFT for k in self.step_shifts):
            return f"invalid per-tensor step: a shift outside {MIN_STEP_SHIFT} ... {MAX_STEP_SHIFT}"
        bits = self.tensor_bits()
        if not all(0 <= b <= MAX_STEP_BITS for b in bits):
            return f"invalid per-tensor step: a step outside 2^-{MAX_STEP_BITS} ... 1"
        for layer in range(self.num_layers):
            if fp.ACTIVATION_BITS + bits[2 * layer] < bits[2 * layer + 1]:
                return "invalid per-tensor step: bias step too fine for its layer's weight step"
        return None

    @property
    def num_layers(self) -> int:
        """Layers (a kernel and a bias each) in `network_shapes()`, before any taps."""
        return (len(self.network_shapes()) - 2 * int(self.learned_upsampling)) // 2

    def tensor_bits(self) -> list[int]:
        """The step exponent k (step 2^-k) of each tensor of `network_shapes()`: its
        module's weight or bias step, then `step_shifts`."""
        bits = []
        for layer in range(self.num_layers):
            bits += list(_module_layer_bits(self, layer))
        bits += [self.upsampling_bits] * (2 * int(self.learned_upsampling))
        if self.step_shifts:
            bits = [b + k for b, k in zip(bits, self.step_shifts, strict=True)]
        return bits

    def shape_fields(self) -> dict:
        """Every field but the image size and the network steps: what a preset names."""
        fields = dataclasses.asdict(self)
        for name in _SIZE_AND_STEPS:
            del fields[name]
        return fields

    def to_bytes(self) -> bytes:
        """The header of the latest format: a preset's number with the image size and the
        steps, or 0 and the explicit form (docs/bitstream.md)."""
        number = presets.preset_of(self.shape_fields())
        if not number:
            return bytes([0]) + self._explicit_bytes()
        out = bytearray([number]) + pack_u16(self.height) + pack_u16(self.width)
        # Bit 7 of the weight step's byte: the context model's own pair follows; bit 6:
        # the per-tensor steps end the header.
        weight_byte = self.weight_bits | (int(self.separate_arm_steps) << 7)
        weight_byte |= int(bool(self.step_shifts)) << 6
        out += bytes([weight_byte, self.bias_bits])
        if self.learned_upsampling:
            out += bytes([self.upsampling_bits])
        if self.separate_arm_steps:
            out += bytes([self.arm_weight_bits, self.arm_bias_bits])
        return bytes(out + self._step_shift_bytes())

    def _step_shift_bytes(self) -> bytes:
        """The per-tensor steps: a 4-bit field (shift - MIN_STEP_SHIFT) per tensor, two
        per byte, high nibble first (the tensors come in pairs: kernel and bias, or the
        upsampling's two tap matrices)."""
        fields = [k - MIN_STEP_SHIFT for k in self.step_shifts]
        return bytes((a << 4) | b for a, b in zip(fields[0::2], fields[1::2], strict=True))

    def _read_step_shifts(self, r: Reader, what: str):
        """This architecture with the per-tensor steps read from `r` (`_step_shift_bytes`)."""
        problem = self.problem()  # the shapes must be valid to count the tensors
        if problem:
            raise BitstreamError(f"{what}: C3 header has an {problem}.")
        data = r.take(len(self.network_shapes()) // 2, "per-tensor steps")
        shifts = tuple(f + MIN_STEP_SHIFT for byte in data for f in (byte >> 4, byte & 15))
        if not any(shifts):
            raise BitstreamError(f"{what}: per-tensor steps flagged but all zero.")
        return dataclasses.replace(self, step_shifts=shifts)

    def _explicit_bytes(self) -> bytes:
        """Format versions 1 and 2's header; in version 3 after a 0 byte."""
        flags = int(self.use_prev_grid) | (int(self.gelu_approximate) << 1)
        flags |= int(self.learned_upsampling) << 2
        flags |= int(self.separate_arm_steps) << 3
        flags |= int(self.synthesis_relu) << 4
        flags |= int(self.synthesis_stabiliser) << 5
        flags |= int(self.inter_grid_features > 0) << 6
        # Bit 7: a second flags byte follows the optional fields of the first.
        flags2 = int(self.context_neighbours > 0 or self.arm_residual)
        flags2 |= int(self.pipelined_order) << 1
        flags2 |= int(self.lossless) << 2
        flags2 |= int(self.pixel_neighbours > 0) << 3
        flags2 |= int(self.separate_pixel_steps) << 4
        flags2 |= int(bool(self.step_shifts)) << 5
        flags |= int(flags2 > 0) << 7
        out = bytearray(pack_u16(self.height) + pack_u16(self.width))
        out += bytes([self.num_grids]) + pack_f32(self.q_step)
        out += bytes([len(self.synthesis_hidden), *self.synthesis_hidden])
        out += bytes([self.num_residual_layers, self.residual_kernel_size])
        out += bytes([len(self.arm_hidden), *self.arm_hidden])
        out += bytes([self.context_rows_cols, self.prev_kernel_size, flags])
        out += pack_f32(self.shift_log_scale)
        out += pack_f32(self.scale_range[0]) + pack_f32(self.scale_range[1])
        out += bytes([self.weight_bits, self.bias_bits])
        if self.learned_upsampling:
            out += bytes([self.upsampling_bits])
        if self.separate_arm_steps:
            out += bytes([self.arm_weight_bits, self.arm_bias_bits])
        if self.inter_grid_features:
            out += bytes([self.num_hyperlatents, self.inter_grid_features, self.inter_grid_grids])
        if flags2:
            out += bytes([flags2])
        if flags2 & 1:
            out += bytes([self.context_neighbours, int(self.arm_residual)])
        if flags2 & 8:
            out += bytes([self.pixel_neighbours, len(self.pixel_hidden), *self.pixel_hidden])
        if flags2 & 16:
            out += bytes([self.pixel_weight_bits, self.pixel_bias_bits])
        return bytes(out + self._step_shift_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "bitstream", version: int = FORMAT_VERSION):
        """The architecture of a header of container format `version`."""
        r = Reader(data, f"{what} (C3 header)")
        number = r.u8("preset") if version >= 3 else 0
        arch = cls._from_preset(r, number, what) if number else cls._from_explicit(r, what)
        problem = arch.problem()
        if problem:
            raise BitstreamError(f"{what}: C3 header has an {problem}.")
        return arch

    @classmethod
    def _from_preset(cls, r: Reader, number: int, what: str):
        if number not in presets.PRESETS:
            raise BitstreamError(
                f"{what}: unknown C3 architecture preset {number} (a newer encoder's?)."
            )
        height, width = r.u16("height"), r.u16("width")
        weight_byte, bias_bits = r.u8("weight step"), r.u8("bias step")
        fields = presets.PRESETS[number]
        upsampling_bits = r.u8("upsampling step") if fields["learned_upsampling"] else 0
        separate = bool(weight_byte & 128)
        arm_bits = (
            (r.u8("context model weight step"), r.u8("context model bias step"))
            if separate
            else (0, 0)
        )
        arch = cls(
            height=height,
            width=width,
            weight_bits=weight_byte & 63,
            bias_bits=bias_bits,
            upsampling_bits=upsampling_bits,
            separate_arm_steps=separate,
            arm_weight_bits=arm_bits[0],
            arm_bias_bits=arm_bits[1],
            **fields,
        )
        if weight_byte & 64:
            arch = arch._read_step_shifts(r, what)
        r.expect_end()
        return arch

    @classmethod
    def _from_explicit(cls, r: Reader, what: str):
        height, width = r.u16("height"), r.u16("width")
        num_grids = r.u8("number of grids")
        q_step = r.f32("q_step")
        synthesis_hidden = tuple(r.take(r.u8("synthesis depth"), "synthesis widths"))
        num_residual_layers = r.u8("residual layers")
        residual_kernel_size = r.u8("residual kernel size")
        arm_hidden = tuple(r.take(r.u8("context model depth"), "context model widths"))
        context_rows_cols = r.u8("context size")
        prev_kernel_size = r.u8("previous-grid kernel size")
        flags = r.u8("flags")
        shift = r.f32("shift_log_scale")
        scale_range = (r.f32("minimum scale"), r.f32("maximum scale"))
        weight_bits, bias_bits = r.u8("weight step"), r.u8("bias step")
        upsampling_bits = r.u8("upsampling step") if flags & 4 else 0
        arm_weight_bits, arm_bias_bits = (
            (r.u8("context model weight step"), r.u8("context model bias step"))
            if flags & 8
            else (0, 0)
        )
        inter_grid = (
            (r.u8("hyperlatents"), r.u8("inter-grid features"), r.u8("inter-grid feature grids"))
            if flags & 64
            else (0, 0, 0)
        )
        flags2 = r.u8("second flags byte") if flags & 128 else 0
        arm_shape = (
            (r.u8("context neighbours"), r.u8("residual context model")) if flags2 & 1 else (0, 0)
        )
        pixel_neighbours, pixel_hidden = 0, ()
        if flags2 & 8:
            pixel_neighbours = r.u8("pixel neighbours")
            pixel_hidden = tuple(r.take(r.u8("pixel context depth"), "pixel context widths"))
            if pixel_neighbours == 0:
                raise BitstreamError(f"{what}: invalid pixel context in the C3 header.")
        pixel_bits = (0, 0)
        if flags2 & 16:
            if not flags2 & 8:
                raise BitstreamError(f"{what}: pixel context steps without a pixel context.")
            pixel_bits = (r.u8("pixel context weight step"), r.u8("pixel context bias step"))
        if flags2 > 63 or (flags & 128 and flags2 == 0):
            raise BitstreamError(f"{what}: unknown flags {flags2:#x} in the C3 header (byte 2).")
        bad_arm = flags2 & 1 and (arm_shape == (0, 0) or arm_shape[1] > 1)
        if bad_arm or (flags & 64 and inter_grid[1] == 0):
            raise BitstreamError(f"{what}: invalid Cool-chic 5 context fields in the C3 header.")
        arch = cls(
            height,
            width,
            num_grids,
            q_step,
            synthesis_hidden,
            num_residual_layers,
            residual_kernel_size,
            arm_hidden,
            context_rows_cols,
            bool(flags & 1),
            prev_kernel_size,
            shift,
            scale_range,
            bool(flags & 2),
            weight_bits,
            bias_bits,
            bool(flags & 4),
            upsampling_bits,
            bool(flags & 8),
            arm_weight_bits,
            arm_bias_bits,
            bool(flags & 16),
            bool(flags & 32),
            *inter_grid,
            arm_shape[0],
            bool(arm_shape[1]),
            bool(flags2 & 2),
            bool(flags2 & 4),
            pixel_neighbours,
            pixel_hidden,
            separate_pixel_steps=bool(flags2 & 16),
            pixel_weight_bits=pixel_bits[0],
            pixel_bias_bits=pixel_bits[1],
        )
        if flags2 & 32:
            arch = arch._read_step_shifts(r, what)
        r.expect_end()
        return arch

    @property
    def num_synthesis_layers(self) -> int:
        """Layers at the synthesis's steps: MLP, residual convolutions, stabiliser, and
        lossless C3's pixel context."""
        mlp = len(self.synthesis_hidden) + 1
        return (
            mlp + self.num_residual_layers + int(self.synthesis_stabiliser) + self.num_pixel_layers
        )

    @property
    def num_pixel_layers(self) -> int:
        """The pixel context's MLP layers and its linear path."""
        return len(self.pixel_hidden) + 2 if self.pixel_neighbours else 0

    @property
    def num_pixel_inputs(self) -> int:
        """The pixel context's inputs: 3 errors per neighbour, the pixel's means and
        ln-scales."""
        return 3 * self.pixel_neighbours + CONTEXT_OUTPUTS

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        """Every coded grid: latents, then hyperlatents."""
        return all_grid_shapes(self.height, self.width, self.num_grids, self.num_hyperlatents)

    @property
    def grid_levels(self) -> list[int]:
        return grid_levels(self.num_grids, self.num_hyperlatents)

    @property
    def num_context_inputs(self) -> int:
        prev = self.prev_kernel_size**2 if self.use_prev_grid else 0
        offsets = context_offsets(self.context_rows_cols, self.context_neighbours)
        return len(offsets) + prev + self.inter_grid_features

    def inter_grid_input_sizes(self) -> list[int]:
        """Inputs of each feature grid's linear layer (the coarser grids)."""
        levels = self.grid_levels
        return [len(feature_inputs(levels, k)) for k in range(self.inter_grid_grids)]

    @property
    def synthesis_outputs(self) -> int:
        """Channels of the synthesis: the image's 3, or lossless C3's 9 parameters."""
        return NUM_LOSSLESS_OUTPUTS if self.lossless else 3

    def network_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the quantised parameters, in `C3Model.network_variables` order."""
        shapes = []
        c = self.synthesis_outputs
        widths = (self.num_grids, *self.synthesis_hidden, c)
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            shapes += [(a, b), (b,)]
        k = self.residual_kernel_size
        shapes += [(k, k, c, c), (c,)] * self.num_residual_layers
        if self.synthesis_stabiliser:
            shapes += [(self.num_grids, c), (c,)]
        if self.pixel_neighbours:
            widths = (self.num_pixel_inputs, *self.pixel_hidden, c)
            for a, b in zip(widths[:-1], widths[1:], strict=True):
                shapes += [(a, b), (b,)]
            shapes += [(self.num_pixel_inputs, c), (c,)]  # the linear path
        widths = (self.num_context_inputs, *self.arm_hidden, 2)
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            shapes += [(a, b), (b,)]
        if self.arm_residual:
            shapes += [(self.num_context_inputs, 2), (2,)]
        for size in self.inter_grid_input_sizes():
            shapes += [(size, self.inter_grid_features), (self.inter_grid_features,)]
        if self.learned_upsampling:  # half filters per level: transposed, pre-concatenation
            shapes += [(self.num_grids - 1, 4)] * 2
        return shapes

    def parameter_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of what `prepare_parameters` returns: `network_shapes()`, then the
        weight step of each layer."""
        return self.network_shapes() + [()] * self.num_layers


def steps_problem(model_config: dict, *steps) -> str | None:
    """What keeps network `steps` (as `C3Model.network_steps` takes them) out of a file
    of the model of `model_config` (`C3Model.get_config()`), or None: the format's rules,
    for encoders that search steps (`models.c3.fit.C3Fitter`, which does not import the
    coder)."""
    try:
        C3Architecture.from_model_config(model_config, *steps)
    except ValueError as e:
        return str(e)
    return None


def integer_bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`models.c3.upsampling.bilinear_taps` with the weight as an integer at 2^-8.

    Output i samples input coordinate x = ((2i + 1) n_in - n_out) / (2 n_out), a
    rational number, so the rounded weight is computed exactly.
    """
    i = np.arange(n_out, dtype=np.int64)
    numerator = (2 * i + 1) * n_in - n_out
    lower = numerator // (2 * n_out)
    remainder = numerator - lower * (2 * n_out)
    one = 2**fp.UPSAMPLING_BITS
    weight = (2 * remainder * one + 2 * n_out) // (4 * n_out)
    i0 = np.clip(lower, 0, n_in - 1)
    i1 = np.clip(lower + 1, 0, n_in - 1)
    return i0.astype(np.int32), i1.astype(np.int32), weight.astype(np.float64)


def integer_antialias_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) antialiased bilinear resize weights as integers summing to 2^8.

    The kernel of `tf.image.resize(..., antialias=True)`: a triangle stretched by the
    downscaling factor, centred at each output sample, renormalised over the input; the
    weights are rational, rounded to 2^-8, and the rounding error goes to the largest tap.
    """
    one = 2**fp.UPSAMPLING_BITS
    ratio = fractions.Fraction(n_in, n_out)
    support = max(ratio, fractions.Fraction(1))
    matrix = np.zeros((n_out, n_in), np.int64)
    for i in range(n_out):
        centre = (i + fractions.Fraction(1, 2)) * ratio
        weights = {}
        # Only inputs within `support` of the centre have a nonzero weight.
        first = max(0, math.floor(centre - support) - 1)
        last = min(n_in, math.ceil(centre + support) + 1)
        for j in range(first, last):
            distance = abs(j + fractions.Fraction(1, 2) - centre) / support
            if distance < 1:
                weights[j] = 1 - distance
        total = sum(weights.values())
        for j, w in weights.items():
            matrix[i, j] = math.floor(w / total * one + fractions.Fraction(1, 2))
        largest = max(weights, key=lambda j: (weights[j], -j))
        matrix[i, largest] += one - matrix[i].sum()
    return matrix


def resize_fixed(grid: tf.Tensor, size: tuple[int, ...]) -> tf.Tensor:
    """Linear resize of integer symbols along each axis (2 for an image's bilinear, 3 for
    a video's trilinear) with `integer_bilinear_taps`: fixed point at 2^-(8 x axes)."""
    one = 2.0**fp.UPSAMPLING_BITS
    x = tf.cast(grid, tf.float64)
    for axis, n_out in enumerate(size):
        n_in = int(grid.shape[axis])
        if n_in == n_out:
            x = x * one
            continue
        i0, i1, weight = integer_bilinear_taps(n_in, n_out)
        shape = [1] * len(size)
        shape[axis] = n_out
        weight = weight.reshape(shape)
        x = tf.gather(x, i0, axis=axis) * (one - weight) + tf.gather(x, i1, axis=axis) * weight
    return x


def laplace_rows(mu: tf.Tensor, two_ln_scale: tf.Tensor, limit: float):
    """Coding table rows and round(mu) of Laplace(mu, scale) values, in fixed point.

    Args:
      mu: the means in value units at the activation scale 2^-12.
      two_ln_scale: 2 ln(scale), scale in value units, at the activation scale.
      limit: round(mu) is clipped to [-limit, limit].
    Returns:
      (rows, rounded_mu): int32 each (`coding.laplace_tables`: the offset bucket of
      mu - round(mu), and ln(scale) on the tables' grid, 1/16 apart).
    """
    act = fp.ACTIVATION_BITS
    rounded = tf.clip_by_value(fp.round_shift(mu, act), -limit, limit)
    frac = tf.clip_by_value(mu - rounded * 2**act, -(2.0 ** (act - 1)), 2.0 ** (act - 1) - 1)
    bucket_bits = act - int(math.log2(lt.OFFSET_BUCKETS))
    bucket = fp.round_shift(frac + 2 ** (act - 1), bucket_bits)
    origin = 2.0 * lt.LN_SCALE_MIN * 2**act
    index_bits = act + 1 - int(math.log2(lt.SCALES_PER_LN))
    scale_index = fp.round_shift(two_ln_scale - origin, index_bits)
    scale_index = tf.clip_by_value(scale_index, 0.0, lt.NUM_SCALES - 1.0)
    rows = lt.row_index(scale_index, bucket)
    return tf.cast(rows, tf.int32), tf.cast(rounded, tf.int32)


def prepare_parameters(arch: C3Architecture, integers: list[np.ndarray]) -> list[np.ndarray]:
    """Checks the quantised parameters and converts them for `IntegerC3` (float64).

    Returns kernels and accumulator biases in `network_shapes()` order, the learned
    upsampling's taps if any, then the weight step (2^-weight_bits) of each layer, as
    scalars. Raises ValueError when they do not fit the architecture or the format's
    range.
    """
    if [tuple(np.shape(q)) for q in integers] != arch.network_shapes():
        raise ValueError("network parameters do not match the architecture")
    bits = arch.tensor_bits()
    taps = []
    if arch.learned_upsampling:  # integers * 2^-bits: exact in float64
        integers, taps = integers[:-2], [np.asarray(q, np.int64) for q in integers[-2:]]
        if max(np.abs(t).max(initial=0) for t in taps) > fp.WEIGHT_LIMIT:
            raise ValueError("upsampling taps beyond the format's range")
        taps = [np.ldexp(t.astype(np.float64), -b) for t, b in zip(taps, bits[-2:], strict=True)]
    parameters, weight_steps = [], []
    for layer in range(arch.num_layers):
        weight_bits, bias_bits = bits[2 * layer], bits[2 * layer + 1]
        kernel, bias = fp.layer_parameters(
            integers[2 * layer], integers[2 * layer + 1], weight_bits, bias_bits, f"layer {layer}"
        )
        parameters += [kernel, bias]
        weight_steps.append(np.float64(np.ldexp(1.0, -weight_bits)))
    return parameters + taps + weight_steps


def layer_module(arch: C3Architecture, layer: int) -> str:
    """Whose steps a layer (in `network_shapes()` order) has: "synthesis", "pixel" (lossless
    C3's pixel context, the synthesis's last layers) or "arm" (the context model and what
    follows it)."""
    num_synthesis = arch.num_synthesis_layers
    if layer >= num_synthesis:
        return "arm"
    return "pixel" if layer >= num_synthesis - arch.num_pixel_layers else "synthesis"


def _module_layer_bits(arch: C3Architecture, layer: int) -> tuple[int, int]:
    """The (weight bits, bias bits) of a layer's module (`C3Architecture.tensor_bits`
    adds the per-tensor shifts)."""
    module = layer_module(arch, layer)
    if module == "arm":
        return arch.arm_bits
    return arch.pixel_bits if module == "pixel" else (arch.weight_bits, arch.bias_bits)


def compiled_key(arch: C3Architecture) -> C3Architecture:
    """What a compiled decoder depends on: the architecture without the network steps.

    The steps reach the fixed-point networks as inputs (`prepare_parameters`), so files
    that differ only in their steps share one compiled decoder.
    """
    return dataclasses.replace(arch, **_NO_STEPS)


def to_pixels(outputs: tf.Tensor) -> tf.Tensor:
    """The synthesis's outputs (activation scale, the image on [0, 1]) -> uint8 pixels."""
    pixels = fp.round_shift(outputs * 255.0, fp.ACTIVATION_BITS)
    return tf.cast(tf.clip_by_value(pixels, 0.0, 255.0), tf.uint8)


PIXEL_TILE = 8192  # pixels per tile of the per-pixel synthesis layers


def _in_tiles(fn, x: tf.Tensor, tile: int = PIXEL_TILE) -> tf.Tensor:
    """fn (a per-row function) on the rows of x, `tile` rows at a time: the hidden
    activations of a tile stay in the CPU's cache instead of making a (pixels, width)
    float64 tensor (151 MB at 768x512 with 48 channels), 2.5x faster here; each row's
    result is the same."""
    n = tf.shape(x)[0]
    padded = tf.pad(x, [[0, (-n) % tile], [0, 0]])
    tiles = tf.reshape(padded, (-1, tile, x.shape[1]))
    out = tf.map_fn(fn, tiles, parallel_iterations=2)
    return tf.reshape(out, (-1, out.shape[-1]))[:n]


class IntegerC3:
    """The fixed-point decoder networks of one bitstream.

    Args:
      arch: the architecture from the header.
      parameters: `prepare_parameters(arch, integers)`, as arrays or tensors (a traced
        function takes them as inputs, so that one trace serves every file of an
        architecture).
    """

    def __init__(self, arch: C3Architecture, parameters):
        self.arch = arch
        self.gelu_table = tf.constant(fp.gelu_lookup_table(arch.gelu_approximate))
        num_layers = arch.num_layers
        layer_parameters, weight_steps = parameters[:-num_layers], parameters[-num_layers:]
        if arch.learned_upsampling:
            self.transposed, self.prefilter = layer_parameters[-2:]
            layer_parameters = layer_parameters[:-2]
        num_mlp = len(arch.synthesis_hidden) + 1
        num_res = arch.num_residual_layers
        num_synthesis = arch.num_synthesis_layers
        layers = [
            fp.FixedPointLayer(kernel, bias, step)
            for kernel, bias, step in zip(
                layer_parameters[0::2], layer_parameters[1::2], weight_steps, strict=True
            )
        ]
        self.synthesis_layers = layers[:num_mlp]
        self.residual_layers = layers[num_mlp : num_mlp + num_res]
        self.stabiliser = layers[num_mlp + num_res] if arch.synthesis_stabiliser else None
        pixel = layers[num_synthesis - arch.num_pixel_layers : num_synthesis]
        self.pixel_layers, self.pixel_linear = pixel[:-1], (pixel[-1] if pixel else None)
        num_arm = len(arch.arm_hidden) + 1
        self.arm_layers = layers[num_synthesis : num_synthesis + num_arm]
        self.arm_stabiliser = layers[num_synthesis + num_arm] if arch.arm_residual else None
        self.inter_grid_layers = layers[num_synthesis + num_arm + int(arch.arm_residual) :]
        gelu = functools.partial(fp.gelu, table=self.gelu_table)
        self.synthesis_activation = tf.nn.relu if arch.synthesis_relu else gelu
        self.arm_activation = gelu
        bits = fp.MULTIPLIER_BITS
        self.q_fixed = float(fp.to_fixed(arch.q_step, bits))
        self.inverse_q_fixed = float(fp.to_fixed(1.0 / arch.q_step, bits))
        act = fp.ACTIVATION_BITS
        self.shift_fixed = float(fp.to_fixed(arch.shift_log_scale, act))
        low, high = arch.scale_range
        # log_scale is clipped to [-2 ln(high), -2 ln(low)], as in the float model.
        self.log_scale_min = float(-fp.decimal_ln(high, act + 1))
        self.log_scale_max = float(-fp.decimal_ln(low, act + 1))
        self.two_ln_q = float(fp.decimal_ln(arch.q_step, act + 1))

    # Context model.

    def _value_inputs(self, fixed: tf.Tensor, bits: int) -> tf.Tensor:
        """Latent values q * x for x at scale 2^-bits -> activations (scale 2^-12)."""
        shift = bits + fp.MULTIPLIER_BITS - fp.ACTIVATION_BITS
        limit = float(fp.ACTIVATION_LIMIT)
        return tf.clip_by_value(fp.round_shift(fixed * self.q_fixed, shift), -limit, limit)

    def inter_grid_features(self, grids: list, k: int) -> tf.Tensor:
        """Grid k's inter-grid features (h_k, w_k, F) at the activation scale, from the
        symbols of the coarser grids (`grids` in list order; only those are read)."""
        h, w = self.arch.grid_shapes[k + 1]  # latent grid k + 1: level k + 1
        levels = self.arch.grid_levels
        grids = [None if g is None else tf.cast(g, tf.float64) for g in grids]
        inputs = stacked_inputs(grids, levels, k, (h, w))
        x = self._value_inputs(tf.reshape(inputs, (h * w, -1)), 0)
        features = tf.reshape(self.inter_grid_layers[k].dense(x), (h, w, -1))
        return nearest_from_level(features, 1, self.arch.grid_shapes[k])

    def pointwise_inter_grid_features(self, inputs: tf.Tensor, grid_ids: tf.Tensor) -> tf.Tensor:
        """The inter-grid features of single latents of any grids (pipelined decoding).

        `inputs` (n, m) float64: latent i's feature inputs, the symbols its grid's
        features read (`inter_grid_features`), zero-padded to m (the most inputs of any
        grid); `grid_ids` (n,): its grid. Returns (n, F), zeros for grids without
        features: the same integers as `inter_grid_features` at those latents (the same
        exact products and sums; the padding adds zeros).
        """
        num, features = len(self.arch.grid_shapes), self.arch.inter_grid_features
        width = inputs.shape[1]
        kernels, biases, steps = [], [], []
        for k in range(num):
            if k < len(self.inter_grid_layers):
                layer = self.inter_grid_layers[k]
                fan_in = layer.weights.shape[0]
                kernels.append(tf.pad(layer.weights, [[0, width - fan_in], [0, 0]]))
                biases.append(tf.reshape(layer.bias, [features]))
                steps.append(tf.cast(layer.weight_step, tf.float64))
            else:
                kernels.append(tf.zeros([width, features], tf.float64))
                biases.append(tf.zeros([features], tf.float64))
                steps.append(tf.constant(1.0, tf.float64))
        kernel = tf.gather(tf.stack(kernels), grid_ids)  # (n, m, F)
        bias = tf.gather(tf.stack(biases), grid_ids)
        # Each layer's own weight step (per-tensor steps can differ between them).
        step = tf.gather(tf.stack(steps), grid_ids)[:, None]
        x = self._value_inputs(inputs, 0)
        accumulator = tf.einsum("ni,nif->nf", x, kernel)
        return fp.FixedPointLayer(None, bias, step).rescale(accumulator)

    def context_rows(
        self,
        context: tf.Tensor,
        prev_window: tf.Tensor | None = None,
        features: tf.Tensor | None = None,
    ):
        """Coding table rows and round(mu) for latents with the given contexts.

        Args:
          context: int32 (n, num causal offsets): the causal symbols of each latent.
          prev_window: float64 (n, prev_kernel_size^2): the finer grid resized to this
            one (fixed point, 2^-16), when the model conditions on it.
          features: float64 (n, F): the inter-grid features (activation scale; zeros
            for grids without), when the model has them.
        Returns:
          (rows, rounded_mu): int32 (n,) each.
        """
        x = self._value_inputs(tf.cast(context, tf.float64), 0)
        if self.arch.use_prev_grid:
            prev = self._value_inputs(prev_window, 2 * fp.UPSAMPLING_BITS)
            x = tf.concat([x, prev], axis=1)
        if self.arch.inter_grid_features:
            x = tf.concat([x, features], axis=1)
        out = self._context_network(x)
        # mu in symbol units (mu_value / q_step).
        mu = fp.round_shift(out[:, 0] * self.inverse_q_fixed, fp.MULTIPLIER_BITS)
        # 2 ln(scale in symbols) = -log_scale - 2 ln q.
        log_scale = tf.clip_by_value(
            out[:, 1] + self.shift_fixed, self.log_scale_min, self.log_scale_max
        )
        return laplace_rows(mu, -log_scale - self.two_ln_q, float(fp.SYMBOL_LIMIT))

    def _context_network(self, x: tf.Tensor) -> tf.Tensor:
        """The context model's layers on its inputs: C3's MLP, or Cool-chic 5's residual
        ReLU layers plus the stabiliser (every sum clamped to the activation range)."""
        if not self.arch.arm_residual:
            return fp.mlp(x, self.arm_layers, self.arm_activation)
        limit = float(fp.ACTIVATION_LIMIT)
        h = x
        for layer in self.arm_layers[:-1]:
            h = tf.nn.relu(tf.clip_by_value(h + layer.dense(h), -limit, limit))
        out = self.arm_layers[-1].dense(h) + self.arm_stabiliser.dense(x)
        return tf.clip_by_value(out, -limit, limit)

    def resize_prev(self, grid: tf.Tensor, shape: tuple[int, int]) -> tf.Tensor:
        """The finer grid (h, w) of symbols resized to `shape`, fixed point at 2^-16."""
        x = tf.cast(grid, tf.float64)
        for axis, n_out in enumerate(shape):
            n_in = int(grid.shape[axis])
            if n_in == n_out:
                x = x * 2.0**fp.UPSAMPLING_BITS
                continue
            matrix = tf.constant(integer_antialias_matrix(n_in, n_out).astype(np.float64))
            x = tf.matmul(matrix, x) if axis == 0 else tf.matmul(x, matrix, transpose_b=True)
        return x

    # Synthesis.

    def upsample(self, grids: list[tf.Tensor]) -> tf.Tensor:
        """Symbols of every grid -> (H, W, num_grids) at 2^-16 (bilinear or learned);
        hyperlatents, if any, are not used."""
        grids = grids[: self.arch.num_grids]
        if self.arch.learned_upsampling:
            return self._learned_upsample(grids)
        size = (self.arch.height, self.arch.width)
        return tf.stack([resize_fixed(g, size) for g in grids], axis=-1)

    def _learned_upsample(self, grids: list[tf.Tensor]) -> tf.Tensor:
        """`models.c3.upsampling.learned_cascade` with the taps k * 2^-u (integers k at
        the header's step): every 1-D pass is rounded back to 2^-16 and clamped to the
        symbol range, so that every product and partial sum is a multiple of 2^-u below
        2^50 * 2^-u, which float64 holds exactly."""
        scale = 2.0 ** (2 * fp.UPSAMPLING_BITS)
        limit = float(fp.SYMBOL_LIMIT) * scale

        def rounded(x):
            return tf.clip_by_value(tf.floor(x + 0.5), -limit, limit)

        def upsample_fn(x, half, n_out, axis):
            return rounded(upsampling.upsample_axis(x, half, n_out, axis))

        def prefilter_fn(x, half, axis):
            return rounded(upsampling.prefilter_axis(x, half, axis))

        values = [tf.cast(g, tf.float64) * scale for g in grids]
        stack = upsampling.learned_cascade(
            values, self.transposed, self.prefilter, upsample_fn, prefilter_fn
        )
        return tf.transpose(stack, [1, 2, 0])

    def synthesize(self, grids: list[tf.Tensor]) -> tf.Tensor:
        """Symbols of every grid -> the decoded 8-bit image (H, W, 3) as uint8."""
        return to_pixels(self.synthesis_outputs(grids))

    def corrected_outputs(self, outputs: tf.Tensor, errors: tf.Tensor) -> tf.Tensor:
        """Lossless C3's pixel context (`models.c3.lossless.PixelContext`) on some pixels.

        Args:
          outputs: (n, 9) the synthesis's outputs at those pixels (activation scale).
          errors: (n, 3 N) their causal neighbours' prediction errors (x - 255 m) / 16
            at the activation scale (`coding.c3.lossless.prediction_errors`), zero
            outside the image, in `shifted_pixels`' order.
        Returns:
          (n, 9) the corrected outputs, clamped to the activation range.
        """
        own = context_outputs(outputs, 2.0**fp.ACTIVATION_BITS)
        x = tf.concat([errors, own], axis=1)
        correction = fp.mlp(x, self.pixel_layers, tf.nn.relu) + self.pixel_linear.dense(x)
        limit = float(fp.ACTIVATION_LIMIT)
        return tf.clip_by_value(outputs + correction, -limit, limit)

    def synthesis_outputs(self, grids: list[tf.Tensor]) -> tf.Tensor:
        """Symbols of every grid -> the synthesis's outputs (H, W, C) at the activation
        scale: the image on [0, 1] (lossy), or lossless C3's 9 parameters per pixel."""
        return self.synthesis_from_upsampled(self.upsample(grids))

    def synthesis_from_upsampled(self, upsampled: tf.Tensor) -> tf.Tensor:
        """Upsampled latents (H, W, G), or a video's frames (T, H, W, G), at 2^-16 ->
        the synthesis's outputs (H, W, C) or (T, H, W, C) at the activation scale; the
        residual convolutions run per frame (C3 video's `per_frame_conv`)."""
        c = self.arch.synthesis_outputs
        shape = upsampled.shape[:-1]
        inputs = tf.reshape(upsampled, (math.prod(shape), upsampled.shape[-1]))
        inputs = self._value_inputs(inputs, 2 * fp.UPSAMPLING_BITS)

        def per_pixel(x):  # the MLP, and the stabiliser's share, of some pixels
            out = fp.mlp(x, self.synthesis_layers, self.synthesis_activation)
            if self.stabiliser is None:
                return out
            return tf.concat([out, self.stabiliser.dense(x)], axis=1)

        per_pixel = _in_tiles(per_pixel, inputs)
        frames = (-1, *shape[-2:], c)  # (frames, H, W, C): one frame for an image
        x = tf.reshape(per_pixel[:, :c], frames)
        pad = self.arch.residual_kernel_size // 2
        limit = float(fp.ACTIVATION_LIMIT)
        for i, layer in enumerate(self.residual_layers):
            accumulator = tf.nn.conv2d(edge_pad(x, pad), layer.weights, 1, "VALID")
            x = tf.clip_by_value(x + layer.rescale(accumulator), -limit, limit)
            if i < len(self.residual_layers) - 1:
                x = self.synthesis_activation(x)
        if self.stabiliser is not None:
            x = x + tf.reshape(per_pixel[:, c:], frames)
            x = tf.clip_by_value(x, -limit, limit)
        return tf.reshape(x, (*shape, c))
