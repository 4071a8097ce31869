"""Named C3 architectures: a file whose decoder matches one sends its number, not its shape.

An explicit C3 header spends 42 bytes on a c3_plus architecture (widths, flags, the
context model's float parameters), 0.005 bpp on a 256x256 crop: as much as 0.5 % of its
RD loss at lambda 1e-3. The configs' architectures are known to every decoder, so a file
of one of them names it in one byte (format version 3, docs/bitstream.md), like a
profile of a video standard; any other architecture is written in full as before.

The table is part of the format: a preset's fields never change once released (a test
pins them). A config that changes its architecture gets a new preset number, or its files
are written in the explicit form, which every decoder reads.
"""

from coding.container import f32

_C3_DEFAULTS = dict(
    num_grids=7,
    q_step=f32(0.4),
    num_residual_layers=2,
    residual_kernel_size=3,
    context_rows_cols=3,
    use_prev_grid=False,
    prev_kernel_size=3,
    shift_log_scale=8.0,
    scale_range=(f32(1e-3), 150.0),
    gelu_approximate=True,
    learned_upsampling=False,
    synthesis_relu=False,
    synthesis_stabiliser=False,
    num_hyperlatents=0,
    inter_grid_features=0,
    inter_grid_grids=0,
    context_neighbours=0,
    arm_residual=False,
    pipelined_order=False,
)

# Preset number -> every `C3Architecture` field but the image size and the network steps.
PRESETS = {
    # configs/c3_kodak.py (and c3_quickstart.py): C3's Kodak decoder.
    1: {**_C3_DEFAULTS, "synthesis_hidden": (18, 18), "arm_hidden": (18, 18)},
    # configs/c3_clic2020.py: C3's CLIC decoder, with the previous grid in the context.
    2: {
        **_C3_DEFAULTS,
        "synthesis_hidden": (24, 24),
        "arm_hidden": (24, 24),
        "use_prev_grid": True,
    },
    # configs/coolchic.py: COOL-CHIC's decoder.
    3: {
        **_C3_DEFAULTS,
        "synthesis_hidden": (12, 12),
        "num_residual_layers": 0,
        "arm_hidden": (12, 12),
        "context_rows_cols": 2,
    },
    # configs/c3_plus.py: with Cool-chic 5's tools (docs/c3.md).
    4: {
        **_C3_DEFAULTS,
        "synthesis_hidden": (48,),
        "arm_hidden": (20, 20),
        "learned_upsampling": True,
        "synthesis_relu": True,
        "synthesis_stabiliser": True,
        "num_hyperlatents": 3,
        "inter_grid_features": 6,
        "inter_grid_grids": 3,
        "context_neighbours": 14,
        "arm_residual": True,
        "pipelined_order": True,
    },
}


def preset_of(fields: dict) -> int:
    """The number of the preset with these fields (`C3Architecture.shape_fields()`),
    or 0 if there is none. Fields added to the architecture after a preset was released
    take, in that preset, the value that files had before them (lossless: False; the
    pixel context, lossless only: none)."""
    fields = dict(fields)
    if fields.pop("lossless", False):
        return 0
    if fields.pop("pixel_neighbours", 0) or fields.pop("pixel_hidden", ()):
        return 0
    for number, preset in PRESETS.items():
        if preset == fields:
            return number
    return 0
