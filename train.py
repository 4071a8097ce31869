"""Fits per-image codecs (C3, COOL-CHIC) to images, or trains an amortised codec
(bls2017, mbt2018_mean, jpegl, two_layer_syn, two_layer_syn2) on crops of a dataset;
one run directory per work unit.

python train.py --config configs/c3_kodak.py [--hid N] [--config.data.root=DIR]
                [--workdir DIR] [--config.fit.num_noise_steps=1000 ...]
python train.py --config configs/mbt2018_mean.py [--hid N] --config.data.name=folder
                --config.data.root=DIR [--config.train.num_steps=...]
"""

import os
import sys

from absl import logging

from common import preemption
from common.cli import run_main
from common.rundir import RunFlags, prepare_workdir

_RUN = RunFlags("Config file (configs/*.py).", "Sweep entry of the config's get_hyper() to run.")


def main(argv):
    del argv
    config, workdir = _RUN.resolve(sys.argv)
    from pipelines.registry import pipeline_for

    pipeline = pipeline_for(config.model.name)
    prepare_workdir(workdir, config)
    logging.info("Run directory: %s", os.path.abspath(workdir))
    preemption.install()
    pipeline(config, workdir)
    logging.info("Done: outputs in %s", os.path.abspath(workdir))


if __name__ == "__main__":
    run_main(main, "train.py", needs_config=True)
