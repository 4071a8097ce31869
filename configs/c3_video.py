"""C3 video (Kim et al. 2023, Sec. 4), UVG-style defaults: under 5k MACs per pixel.

python train.py --config configs/c3_video.py --config.data.video=clip.y4m [--hid N]
python codec.py encode -i clip.y4m -o clip.c3v --config configs/c3_video.py
python codec.py decode -i clip.c3v -o decoded.y4m        # or a folder of PNG frames

The video is cut into spatio-temporal patches (C3's sizes by lambda, `patch_size`), each
fitted on its own: a sweep entry (`get_hyper()`) is one (patch, lambda), a Slurm array
task under launch.py; `codec.py merge` joins the patch files of one lambda into the
video's file. Settings that differ from the image recipe (C3's configs/uvg.py): 5 grids
downsampled by 2 in time and space, q_step 0.2, synthesis (32, 32), context model
(16, 16) over a (1, 2, 2) causal window and a 5x5 window of the previous latent frame,
gradient clip 1e-2, Kumaraswamy a from 1.75. C3's (1, 4, 4) context is
`model.context_rows_cols=4, model.prev_kernel_size=7` here (the format's largest
previous-frame window; C3's is 9x9).
"""

import math

from ml_collections import config_dict

from configs import c3_base

# C3's UVG lambdas (its sweep).
LAMBDAS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3)
# C3's patch (frames, height, width) by lambda: > 1e-3: 75 x 270 x 320; 2e-4 .. 1e-3:
# 60 x 180 x 240; below: 30 x 180 x 240. Rows (lowest lambda, frames, height, width), the
# first that applies wins; 1.5e-3 sits between C3's sweep lambdas 1e-3 and 2e-3.
PATCH_BY_LAMBDA = ((1.5e-3, 75, 270, 320), (2e-4, 60, 180, 240), (0.0, 30, 180, 240))


def patch_size(lmbda: float, rows=PATCH_BY_LAMBDA) -> tuple[int, int, int]:
    """The patch (frames, height, width) for lambda (pipelines.video reads the same rows
    from config.video.patch_by_lambda)."""
    for low, *size in rows:
        if lmbda >= low:
            return tuple(size)
    raise ValueError(f"no patch size for lambda {lmbda}.")


def get_video_config() -> config_dict.ConfigDict:
    """The image recipe (c3_base) with C3's video settings."""
    config = c3_base.get_base_config()
    config.name = "c3_video"
    config.data = config_dict.ConfigDict()
    config.data.name = "video"
    # A .y4m, a folder of numbered PNG frames, or any video ffmpeg reads.
    config.data.video = ""
    config.data.max_frames = 0  # 0: every frame
    # Patch grid for the sweep (get_hyper): the video's size, known before it is read.
    config.data.frames = 0
    config.data.height = 0
    config.data.width = 0
    model = config_dict.ConfigDict()
    model.name = "c3_video"
    model.lmbda = 1e-3
    model.num_grids = 5
    model.time_factor = 2
    model.q_step = 0.2
    model.gain_factor = 2.0
    model.latent_gain = 1.0
    model.synthesis_hidden = (32, 32)
    model.num_residual_layers = 2
    model.residual_kernel_size = 3
    model.arm_hidden = (16, 16)
    model.context_rows_cols = 2
    model.prev_kernel_size = 5
    model.shift_log_scale = 8.0
    model.scale_range = (1e-3, 150.0)
    model.gelu_approximate = True
    model.output_clip = "straight_through"
    config.model = model
    config.video = config_dict.ConfigDict()
    # (frames, height, width) of a patch; () takes the row of patch_by_lambda for the
    # lambda (C3's sizes).
    config.video.patch = ()
    config.video.patch_by_lambda = PATCH_BY_LAMBDA
    # Which patches this run fits ("" all, else comma-separated indices, raster order:
    # time, then rows, then columns); the sweep runs one per task.
    config.video.patches = ""
    # The signal each patch fits: "rgb" (C3's), or "yuv": the frames' 8-bit BT.601
    # limited-range Y'CbCr 4:4:4, the MSE on its three planes equally weighted (the
    # decoded frames are converted to RGB).
    config.video.colour = "rgb"
    config.fit.grad_clip = 1e-2
    config.fit.kumaraswamy_start = 1.75
    config.fit.num_noise_steps = 100_000
    config.fit.max_ste_steps = 10_000
    # Not for video yet: batched lambdas, rate control, architecture search.
    del config.arch_search
    return config


def get_config():
    return get_video_config()


def patch_lambda_sweep(frames: int, height: int, width: int, lambdas=LAMBDAS) -> list[dict]:
    """One sweep entry per (lambda, patch): the patches of C3's size for that lambda."""
    sweep = []
    for lmbda in lambdas:
        t, h, w = patch_size(lmbda)
        count = math.ceil(frames / t) * math.ceil(height / h) * math.ceil(width / w)
        for index in range(count):
            sweep.append({"model.lmbda": lmbda, "video.patches": str(index)})
    return sweep


def get_hyper():
    """UVG's 1080p sequences (600 frames; ShakeNDry 300): pass the video's size through
    data.frames/height/width when it differs."""
    config = get_config()
    frames = config.data.frames or 600
    return patch_lambda_sweep(frames, config.data.height or 1080, config.data.width or 1920)
