"""Two-layer synthesis without the residual branch, 24 hidden channels, a plain CNN
analysis (256 channels) and mixed quantisation (shallow-ntc's `two_layer_syn2`).
"""

from configs import amortised_base


def get_config():
    config = amortised_base.get_base_config("two_layer_syn2")
    config.model.analysis = "cnn"
    config.model.analysis_channels = (256, 256, 256)
    config.model.synthesis = "two_layer"
    config.model.synthesis_channels = (24,)
    config.model.two_layer_residual = False
    config.model.quantization = "mixed"
    return config


def get_hyper():
    return amortised_base.lambda_sweep()
