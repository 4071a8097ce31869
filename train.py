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

from absl import app, flags, logging
from ml_collections import config_flags

from common import preemption
from common.config import (
    ConfigError,
    apply_sweep_entry,
    check_config_path,
    cli_overridden_keys,
    parse_flags,
    quiet_tensorflow,
    sweep_entry,
)
from common.datasets import DatasetError
from common.images import ImageError
from common.rundir import default_workdir, prepare_workdir, work_unit_name

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
_HID = flags.DEFINE_integer("hid", None, "Sweep entry of the config's get_hyper() to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: ./runs/...).")
_ROOT = flags.DEFINE_string(
    "root", None, "Experiment directory: the run directory is ROOT/wid=<hid>-<name>-<k=v,...>."
)


def main(argv):
    del argv
    config = _CONFIG.value
    overrides = {}
    if _HID.value is not None:
        overrides = sweep_entry(flags.FLAGS["config"].config_filename, _HID.value)
        apply_sweep_entry(config, overrides, keep=cli_overridden_keys(sys.argv))
    workdir = _WORKDIR.value
    if not workdir and _ROOT.value:
        workdir = os.path.join(_ROOT.value, work_unit_name(_HID.value or 0, config.name, overrides))
    workdir = workdir or default_workdir(config.name, _HID.value, overrides)
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
    else:
        raise ConfigError(f"train.py does not know how to train model {config.model.name!r}.")
    logging.info("Done: results in %s", os.path.join(os.path.abspath(workdir), "results"))


def run() -> None:
    quiet_tensorflow()
    flags.mark_flag_as_required("config")
    try:
        check_config_path(sys.argv)
        app.run(main, flags_parser=parse_flags)
    except (ConfigError, DatasetError, ImageError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
