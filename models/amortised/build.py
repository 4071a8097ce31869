"""The amortised codecs of the zoo, built from `config.model`: an analysis and a synthesis
transform (models/amortised/transforms.py), with a factorized prior (Balle et al. 2017)
or a mean-scale hyperprior (Minnen et al. 2018) over the latents
(models/amortised/hyperprior.py). Configs: configs/{bls2017,mbt2018_mean,jpegl,
two_layer_syn,two_layer_syn2}.py.
"""

from common.errors import ConfigError
from models.amortised import hyperprior, transforms
from models.registry import register_model

# Each name has a config in configs/ and a codec id in coding/container.py.
AMORTISED_MODELS = ("bls2017", "mbt2018_mean", "jpegl", "two_layer_syn", "two_layer_syn2")


def _analysis(m):
    channels = tuple(m.analysis_channels) + (m.latent_channels,)
    if m.analysis == "gdn":
        return transforms.GDNAnalysis(channels, name="analysis")
    if m.analysis == "elic":
        return transforms.ELICAnalysis(channels, m.elic_residual_blocks, name="analysis")
    if m.analysis == "cnn":
        return transforms.CNNAnalysis(channels, name="analysis")
    raise ConfigError(f"unknown model.analysis {m.analysis!r}; use gdn, elic or cnn.")


def _synthesis(m):
    if m.synthesis == "gdn":
        return transforms.GDNSynthesis(m.synthesis_channels, name="synthesis")
    if m.synthesis == "jpeg_like":
        return transforms.JPEGLikeSynthesis(name="synthesis")
    if m.synthesis == "two_layer":
        (hidden,) = m.synthesis_channels
        return transforms.TwoLayerSynthesis(hidden, residual=m.two_layer_residual, name="synthesis")
    raise ConfigError(f"unknown model.synthesis {m.synthesis!r}; use gdn, jpeg_like or two_layer.")


@register_model(*AMORTISED_MODELS, family="amortised")
def build_amortised_model(model_config):
    """Builds (without weights) the amortised codec that `config.model` describes."""
    m = model_config
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
