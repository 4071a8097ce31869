"""RC with HEVC intra 4:4:4 (x265 veryslow, tune psnr: our BPG) as the lossy layer.

RC's BPG Q (x265's QP) is 12..17 for its released model, 13-14 on average. Training
pairs at QP 12, 16 and 20; at encode time QPs 12 to 24 in steps of 3 are tried and the
smallest file is kept. Train with
`python train.py --config configs/rc_hevc.py --config.data.root DIR --workdir RUN`, code
with `python codec.py encode -i x.png -o x.lz --workdir RUN` (and decode likewise).
"""

from configs import rc_base


def get_config():
    config = rc_base.get_base_config("rc_hevc")
    config.lossy.qualities = (12, 15, 18, 21, 24)
    config.lossy.train_qualities = (12, 16, 20)
    return config
