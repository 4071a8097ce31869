"""Which pipeline trains a model: each family's training pipeline registers itself.

    @register_pipeline("per_image")
    def run(config, workdir): ...          # fits every image of config.data

    train = pipeline_for(config.model.name)  # one lookup in train.py
    train(config, workdir)

The family comes from the model registry (`models.registry.family`). A new family adds
its pipeline module to `PIPELINE_MODULES`.
"""

import importlib
from collections.abc import Callable

from common.errors import ConfigError
from models import registry as model_registry

PIPELINE_MODULES = (
    "pipelines.per_image",
    "pipelines.amortised_training",
    "pipelines.rc_training",
    "pipelines.hvae_training",
    "pipelines.video",
)

_PIPELINES: dict[str, Callable] = {}


def register_pipeline(family: str):
    """Decorator: `run(config, workdir)` trains (or fits) the models of `family`."""

    def decorator(run):
        if family in _PIPELINES and _PIPELINES[family] is not run:
            raise ValueError(f"family {family!r} has two training pipelines.")
        _PIPELINES[family] = run
        return run

    return decorator


def pipeline_for(model_name: str) -> Callable:
    """The training pipeline of the model called `model_name`."""
    for module in PIPELINE_MODULES:
        importlib.import_module(module)
    family = model_registry.family(model_name)
    if family not in _PIPELINES:
        raise ConfigError(f"no training pipeline for {model_name!r} (family {family}).")
    return _PIPELINES[family]
