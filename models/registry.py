"""Maps `config.model.name` to model classes, so scripts build any model from a config."""

from models.c3.model import C3Model

PER_IMAGE_MODELS = {"c3": C3Model}


def build_per_image_model(model_config, height: int, width: int):
    """Builds a per-image codec model for an image of the given size from `config.model`."""
    name = model_config.name
    if name not in PER_IMAGE_MODELS:
        raise ValueError(f"unknown per-image model {name!r}; known: {sorted(PER_IMAGE_MODELS)}")
    kwargs = {k: v for k, v in model_config.items() if k not in ("name", "lmbda")}
    return PER_IMAGE_MODELS[name](height=height, width=width, **kwargs)
