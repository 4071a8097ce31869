"""Loading a trained run directory: its config.json, latest checkpoint and entropy tables.

    run = load_trained_run("runs/mbt")   # -> TrainedRun(workdir, config, checkpoint, codec)
    data = run.codec.encode(image)

The range coder's CDF tables are computed once per checkpoint and stored beside it
(RUN/codec/<checkpoint>/tables): every later encoder and decoder reads the same integers
instead of recomputing them from floats (tfc's advice), so a file decodes with the run
directory that wrote it even if TensorFlow's float kernels change.
"""

import dataclasses
import os
import shutil
import tempfile

import tensorflow as tf
from ml_collections import config_dict

from coding.amortised.codec import AmortisedCodec, entropy_models
from common.errors import CodecError
from common.rundir import read_run_config
from models import registry

CHECKPOINT_DIR = "checkpoints"
TRAINED_FAMILIES = ("amortised", "residual", "hvae")
TABLES_DIR = "codec"


def build_model(model_config):
    """The trained model of `config.model` (amortised codec, RC's residual network or a
    hierarchical VAE), with its variables created."""
    model = registry.build_model(model_config)
    if registry.family(model_config.name) == "amortised":
        model(tf.zeros([1, model.total_stride, model.total_stride, 3]))
    return model


def restore_model(workdir: str, model_config):
    """(model with the run's latest weights, checkpoint path); CodecError if untrained."""
    model = build_model(model_config)
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        raise CodecError(f"{workdir}: no checkpoint in {directory} (has it been trained?).")
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model, latest


def load_or_store_tables(models: dict, workdir: str, checkpoint: str) -> None:
    """Reads the stored tables of `checkpoint` into `models`, or stores theirs if none yet.

    Safe when several processes load the same run at once: the first to rename its
    temporary folder into place wins, the others read what it stored."""
    tables = tf.train.Checkpoint(**models)
    directory = os.path.join(workdir, TABLES_DIR, os.path.basename(checkpoint))
    prefix = os.path.join(directory, "tables")
    if os.path.isdir(directory):
        tables.read(prefix).assert_existing_objects_matched()
        return
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(directory))
    try:
        tables.write(os.path.join(tmp, "tables"))
        os.replace(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(directory):  # not another process storing them first
            raise
        tables.read(prefix).assert_existing_objects_matched()


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    workdir: str
    config: config_dict.ConfigDict
    checkpoint: str  # path prefix of the checkpoint the codec uses
    codec: AmortisedCodec  # or RcCodec, HvaeCodec

    @property
    def steps(self) -> int | None:
        """Training steps of the checkpoint (its number), if it has one."""
        suffix = self.checkpoint.rsplit("-", 1)[-1]
        return int(suffix) if suffix.isdigit() else None


def is_trained_run(workdir: str) -> bool:
    """Whether `workdir` is the run directory of a trained model (amortised codec, RC's
    residual network or a hierarchical VAE; trained or not)."""
    if not os.path.isfile(os.path.join(workdir, "config.json")):
        return False
    name = read_run_config(workdir).model.name
    return registry.is_registered(name) and registry.family(name) in TRAINED_FAMILIES


def load_trained_run(workdir: str) -> TrainedRun:
    """The codec of a trained run directory (its latest checkpoint); CodecError if the
    folder is not one."""
    if not os.path.isdir(workdir):
        raise CodecError(f"--workdir {workdir!r} is not a folder.")
    config = read_run_config(workdir)
    name = config.model.name
    if not registry.is_registered(name) or registry.family(name) not in TRAINED_FAMILIES:
        raise CodecError(
            f"{workdir}: {name!r} is not a trained model (amortised, RC or hierarchical VAE)."
        )
    model, checkpoint = restore_model(workdir, config.model)
    description = f"{name} ({os.path.abspath(workdir)}, {os.path.basename(checkpoint)})"
    if registry.family(name) == "residual":
        from coding.rc.codec import RcCodec
        from pipelines.rc_training import make_lossy_layer

        codec = RcCodec(model, config, description, layer=make_lossy_layer(config))
        return TrainedRun(workdir, config, checkpoint, codec)
    if registry.family(name) == "hvae":
        from coding.vae.codec import HvaeCodec
        from models.vae.hvae import latent_entropy_model

        tables = {"latent": latent_entropy_model(compression=True)}
        load_or_store_tables(tables, workdir, checkpoint)
        codec = HvaeCodec(model, tables["latent"], description)
        return TrainedRun(workdir, config, checkpoint, codec)
    models = entropy_models(model)
    load_or_store_tables(models, workdir, checkpoint)
    return TrainedRun(workdir, config, checkpoint, AmortisedCodec(name, model, models, description))
