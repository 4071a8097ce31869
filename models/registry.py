"""Which model a config names: families register their builders with a decorator.

    @register_model("c3", family="per_image")
    def build_c3(model_config, height, width): ...

    model = build_model(config.model, height=512, width=768)   # one lookup, any family
    family("mbt2018_mean")                                        # -> "amortised"

A family is what decides the pipeline that trains it (`pipelines.registry`): "per_image"
models are fitted to each image, "amortised" ones trained once on a dataset. A new
family adds its module to `FAMILY_MODULES`; its builders register themselves on import.
"""

import dataclasses
import importlib
from collections.abc import Callable

from common.errors import ConfigError

# Modules whose import registers each family's models.
FAMILY_MODULES = (
    "models.c3.model",
    "models.c3.video",
    "models.amortised.build",
    "models.rc.residual",
    "models.vae.hvae",
)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable


_MODELS: dict[str, ModelEntry] = {}


def register_model(*names: str, family: str):
    """Decorator: `builder(model_config, **sizes)` builds the models called `names`."""
    if not names:
        raise ValueError("register_model needs at least one model name.")

    def decorator(builder):
        for name in names:
            if name in _MODELS and _MODELS[name].builder is not builder:
                raise ValueError(f"model {name!r} is registered twice.")
            _MODELS[name] = ModelEntry(name, family, builder)
        return builder

    return decorator


def _entries() -> dict[str, ModelEntry]:
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    return _MODELS


def names(family: str | None = None) -> tuple[str, ...]:
    """Registered model names (of one family), in registration order."""
    return tuple(n for n, e in _entries().items() if family is None or e.family == family)


def is_registered(name: str) -> bool:
    return name in _entries()


def entry(name: str) -> ModelEntry:
    entries = _entries()
    if name not in entries:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(entries)}.")
    return entries[name]


def family(name: str) -> str:
    return entry(name).family


def build_model(model_config, **sizes):
    """Builds the model that `config.model` names (per-image models take height, width)."""
    return entry(model_config.name).builder(model_config, **sizes)
