"""QARV, qarv_base (Duan et al., TPAMI 2023): one variable-rate model, lambda in
[16, 2048] sampled per image (cube-root uniform) and fed to AdaLN in every block; 9
latent layers at strides 64 to 8, none at stride 4 (faster decoding than QRes-VAE).
`eval.py --lmbdas ...` codes every rate with this one model. Decoder stages s64 .. s4:
widths 512, 512, 384, 256, 128, ConvNeXt MLP ratios 4, 3, 2, 1.75, 1.5, a block before
and after the latents of each stage with latents, 8 blocks at s4; encoder widths 192,
384, 512, 512, 512 with a block before each patch-down. 92.0M parameters (published
93.4M).
"""

from configs import hvae_base


def get_config():
    config = hvae_base.get_base_config("qarv")
    config.train.num_steps = 2_000_000
    config.train.batch_size = 32
    m = config.model
    m.variant = "qarv"
    m.lmbda = 128.0  # the default rate of `codec.py encode` without --lmbda
    m.encoder_widths = (192, 384, 512, 512, 512)
    m.encoder_blocks = (6, 6, 6, 4, 4)
    m.encoder_kernels = (7, 7, 5, 3, 1)
    m.decoder_widths = (512, 512, 384, 256, 128)
    m.decoder_kernels = (1, 3, 5, 7, 7)
    m.latent_channels = ((32,), (32, 32), (96, 96, 96), (8, 8, 8), ())
    m.encoder_down_blocks = True
    m.decoder_blocks_before = (0, 1, 1, 1, 0)
    m.decoder_blocks = (1, 1, 1, 1, 8)
    m.decoder_mlp_ratios = (4, 3, 2, 1.75, 1.5)
    return config
