"""C3 on Kodak with each work unit fitting one image at 7 lambdas together (issue 18).

The same fits as configs/c3_kodak.py (C3's recipe, the 14 lambdas of its sweep), in
24 x 2 work units instead of 24 x 14: each unit is (image, 7 lambdas) and fits them in
one batched fit (`fit.lambdas`, models/c3/batched.py), writing one file and results row
per lambda (`<image>@<lambda>`). On an accelerator, where one C3 fit leaves the device
mostly idle, that is where the time goes down; on a CPU it only saves units (see
benchmarks/results/batched_fit.json).

python train.py --config configs/c3_kodak_batched.py --hid 0 [--config.data.root=DIR]
./launch.py --main train --config configs/c3_kodak_batched.py --sargs "--gres=gpu:1"
"""

from configs import c3_base, c3_kodak


def get_config():
    config = c3_kodak.get_config()
    config.name = "c3_kodak_batched"
    return config


def get_hyper():
    return c3_base.image_lambda_set_sweep(24, per_unit=7)
