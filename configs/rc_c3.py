"""RC with a lossy C3 file as the lossy layer (configs/c3_kodak.py's decoder and recipe).

Every training image and every lossy quality (lambda) costs a C3 fit to make its pair,
once (cached in RUN/lossy/), and so does every quality tried at encode time: this is the
slow RC. The lambdas sit at C3's high-rate end, where the residual is small: on the
kodim23 256x256 crop with this budget (500 + 50 steps, about 35 s on 2 CPU cores),
lambda 1e-4 gives 36.0 dB at 1.16 bpp, 3e-4 35.3 dB at 0.82 bpp, and 5e-3 only 30.4 dB at
0.32 bpp (the residual then costs about 1 bit per sub-pixel more). The step budget is a
CPU's: on a GPU, raise `lossy.c3.fit.num_noise_steps` for a better lossy layer (at 2000
steps C3 reaches 35-36 dB at 0.5 bpp on that crop).
"""

from configs import c3_kodak, rc_base


def get_config():
    config = rc_base.get_base_config("rc_c3")
    config.lossy.qualities = (1e-4, 3e-4)
    config.lossy.train_qualities = (2e-4,)
    config.lossy.train_max_side = 256  # a C3 fit per training photo: its central 256x256
    config.lossy.c3 = c3_kodak.get_config()
    config.lossy.c3.fit.num_noise_steps = 500
    config.lossy.c3.fit.max_ste_steps = 50
    return config
