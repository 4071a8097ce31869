"""A few-minute tour of the whole C3 pipeline on an image every user has offline.

scipy (pinned by tensorflow-compression) bundles `scipy.misc.face()`, a real 768x1024
photo; we downsample it by 2 with area averaging (which also hides its old JPEG block
grid) and fit the Kodak architecture with a short schedule. Expect a visibly good
reconstruction, not C3's published quality, which needs 110k steps.
"""

from configs import c3_base


def get_config():
    config = c3_base.get_base_config()
    config.name = "c3_quickstart"
    config.data.name = "scipy_face"
    config.data.index = 0
    config.data.num_images = 1
    config.model.lmbda = 2e-3
    config.fit.num_noise_steps = 300
    config.fit.max_ste_steps = 40
    config.fit.log_every = 50
    config.fit.checkpoint_every = 0
    return config


def get_hyper():
    return c3_base.image_lambda_sweep(1, lambdas=(2e-3, 1e-2))
