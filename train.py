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
from common.config import ConfigError, run_config_script
from common.rundir import RunFlags, prepare_workdir

_RUN = RunFlags("Config file (configs/*.py).", "Sweep entry of the config's get_hyper() to run.")


def main(argv):
    del argv
    config, workdir = _RUN.resolve(sys.argv)
    prepare_workdir(workdir, config)
    logging.info("Run directory: %s", os.path.abspath(workdir))
    from models.registry import AMORTISED_MODELS, PER_IMAGE_MODELS

    if config.model.name in PER_IMAGE_MODELS:
        from coding import c3_experiment
        from models.c3.fit import FitError

        preemption.install()
        try:
            c3_experiment.run(config, workdir)
        except FitError as e:
            raise SystemExit(f"train.py: error: fit failed: {e}") from None
        except preemption.Preempted as e:
            logging.warning("%s", e)
            # 143 = killed by SIGTERM: a requeued Slurm task or a rerun resumes.
            raise SystemExit(143) from None
    elif config.model.name in AMORTISED_MODELS:
        from coding import amortised_experiment

        preemption.install()
        try:
            summary = amortised_experiment.train(config, workdir)
        except amortised_experiment.TrainingError as e:
            raise SystemExit(f"train.py: error: {e}") from None
        except preemption.Preempted as e:
            logging.warning("%s", e)
            raise SystemExit(143) from None
        logging.info("Trained %d steps (%s s/step).", summary["steps"], summary["seconds_per_step"])
        logging.info(
            "Done: checkpoints in %s", os.path.join(os.path.abspath(workdir), "checkpoints")
        )
        return
    else:
        raise ConfigError(f"train.py does not know how to train model {config.model.name!r}.")
    logging.info("Done: results in %s", os.path.join(os.path.abspath(workdir), "results"))


def run() -> None:
    run_config_script(main, "train.py")


if __name__ == "__main__":
    run()
