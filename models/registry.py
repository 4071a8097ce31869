"""Maps `config.model.name` to model classes, so scripts build any model from a config."""

from models.c3.model import C3Model

PER_IMAGE_MODELS = {"c3": C3Model}

# Amortised codecs (trained once on a dataset); each name has a config in configs/.
AMORTISED_MODELS = ("bls2017", "mbt2018_mean", "jpegl", "two_layer_syn", "two_layer_syn2")


def build_per_image_model(model_config, height: int, width: int):
    """Builds a per-image codec model for an image of the given size from `config.model`."""
    name = model_config.name
    if name not in PER_IMAGE_MODELS:
        raise ValueError(f"unknown per-image model {name!r}; known: {sorted(PER_IMAGE_MODELS)}")
    kwargs = {k: v for k, v in model_config.items() if k not in ("name", "lmbda")}
    return PER_IMAGE_MODELS[name](height=height, width=width, **kwargs)


def _analysis(m):
    from models import transforms

    channels = tuple(m.analysis_channels) + (m.latent_channels,)
    if m.analysis == "gdn":
        return transforms.GDNAnalysis(channels, name="analysis")
    if m.analysis == "elic":
        return transforms.ELICAnalysis(channels, m.elic_residual_blocks, name="analysis")
    if m.analysis == "cnn":
        return transforms.CNNAnalysis(channels, name="analysis")
    raise ValueError(f"unknown model.analysis {m.analysis!r}; use gdn, elic or cnn.")


def _synthesis(m):
    from models import transforms

    if m.synthesis == "gdn":
        return transforms.GDNSynthesis(m.synthesis_channels, name="synthesis")
    if m.synthesis == "jpeg_like":
        return transforms.JPEGLikeSynthesis(name="synthesis")
    if m.synthesis == "two_layer":
        (hidden,) = m.synthesis_channels
        return transforms.TwoLayerSynthesis(hidden, residual=m.two_layer_residual, name="synthesis")
    raise ValueError(f"unknown model.synthesis {m.synthesis!r}; use gdn, jpeg_like or two_layer.")


def build_amortised_model(model_config):
    """Builds (without weights) the amortised codec that `config.model` describes."""
    from models import hyperprior, transforms

    m = model_config
    if m.name not in AMORTISED_MODELS:
        raise ValueError(f"unknown amortised model {m.name!r}; known: {AMORTISED_MODELS}")
    if m.hyper_channels == 0:
        return hyperprior.FactorizedPrior(
            _analysis(m), _synthesis(m), m.latent_channels, m.quantization, name=m.name
        )
    return hyperprior.MeanScaleHyperprior(
        _analysis(m),
        _synthesis(m),
        transforms.HyperAnalysis((m.hyper_channels,) * 3, name="hyper_analysis"),
        transforms.HyperSynthesis(
            m.hyper_synthesis_channels, m.latent_channels, name="hyper_synthesis"
        ),
        m.latent_channels,
        m.hyper_channels,
        m.quantization,
        name=m.name,
    )
