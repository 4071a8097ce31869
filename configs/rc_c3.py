"""RC with a lossy C3 file as the lossy layer (configs/c3_kodak.py's decoder and recipe).

Every training image and every lossy quality (lambda) costs a C3 fit to make its pair,
once (cached in RUN/lossy/), and so does every quality tried at encode time: this is the
slow RC. The lambdas span C3's high-rate end, where the residual is small.
"""

from configs import c3_kodak, rc_base


def get_config():
    config = rc_base.get_base_config("rc_c3")
    config.lossy.qualities = (0.02, 0.005)
    config.lossy.train_qualities = (0.02, 0.005)
    config.lossy.c3 = c3_kodak.get_config()
    return config
