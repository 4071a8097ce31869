"""C3 video at test and CPU scale: a few frames at low resolution, short schedules.

python codec.py encode -i clip.y4m -o clip.c3v --config configs/c3_video_small.py
Four grids, the whole clip one patch (up to 16 x 64 x 64), 600 + 60 steps.
"""

from configs import c3_video


def get_config():
    config = c3_video.get_video_config()
    config.name = "c3_video_small"
    config.model.num_grids = 4
    config.model.lmbda = 1e-3
    config.video.patch = (16, 64, 64)
    config.fit.num_noise_steps = 600
    config.fit.max_ste_steps = 60
    config.fit.log_every = 50
    return config


def get_hyper():
    return [{"model.lmbda": lmbda} for lmbda in (3e-4, 1e-3, 3e-3)]
