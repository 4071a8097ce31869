"""The training recipe shared by the hierarchical VAEs (QRes-VAE, QARV; Duan et al. 2023).

Not a runnable config on its own: `qres_vae.py`, `qarv.py` and their `*_small.py`
variants start from `get_base_config(name)` and set the architecture. The recipe is the
papers': 256x256 crops, Adam 2e-4 constant, global clip-norm 2, an exponential moving
average of the weights (0.9999) that the final checkpoint holds; QRes-VAE trains 600k
steps of batch 64, QARV 2M of batch 32 (multi-GPU days; the small variants are sized for
this CPU). Where ours differs: QARV decays its rate with a cosine over the second half,
ours drops it x0.1 after 80 % (the schedule every amortised model of the zoo uses).

lambda is the papers' (loss = nats per sub-pixel + lambda MSE on [-1, 1]); lambda_c of the
zoo's other models (bpp + lambda_c MSE_255) is about 2.66e-4 lambda.
"""

from ml_collections import config_dict

from configs import amortised_base

# QRes-VAE's eight fixed-rate models; QARV's evaluation grid is 16 log-spaced in the range.
LAMBDAS = (16, 32, 64, 128, 256, 512, 1024, 2048)
LAMBDA_RANGE = (16.0, 2048.0)


def get_base_config(name: str) -> config_dict.ConfigDict:
    config = amortised_base.get_base_config(name)
    config.model = config_dict.ConfigDict()
    config.model.name = name
    config.model.variant = "qres"  # qres | qarv
    config.model.lmbda = 2048.0  # fixed rate; a variable-rate model's default lambda
    config.model.lmbda_range = LAMBDA_RANGE  # variable rate: trained over this range
    config.model.embed_dim = 256  # variable rate: width of the lambda embedding (QARV's)
    # variable rate: how the images of a batch, each at its own lambda, add up in the
    # loss: "sum" (the papers') or "log" (each weighs by its own loss; models/vae/hvae.py)
    config.model.loss_balance = "sum"
    config.model.layer_scale = 1e-6  # initial layer scale of every ConvNeXt block (ConvNeXt's)
    # Encoder stages at strides 4, 8, ..., 4 x 2^(n-1): width, ConvNeXt blocks, kernel.
    config.model.encoder_widths = ()
    config.model.encoder_blocks = ()
    config.model.encoder_kernels = ()
    # A ConvNeXt block before each x2 patch-down of the encoder (the papers' PatchDown).
    config.model.encoder_down_blocks = False
    # Decoder stages, coarse to fine: width, kernel, latent layers' z channels, and the
    # ConvNeXt blocks before and after the latents, with their MLP ratio (empty: none, 2).
    config.model.decoder_widths = ()
    config.model.decoder_kernels = ()
    config.model.latent_channels = ()
    config.model.decoder_blocks = ()
    config.model.decoder_blocks_before = ()
    config.model.decoder_mlp_ratios = ()

    config.train.num_steps = 600_000
    config.train.batch_size = 64
    config.train.learning_rate = 2e-4
    config.train.warmup_fraction = 0.0
    config.train.decay_after = 1.0  # constant
    config.train.clip_norm = 2.0
    config.train.ema_momentum = 0.9999  # 0: no moving average
    config.train.lambda_warmup_factor = 1.0
    config.train.checkpoint_every = 5000
    config.train.validate_every = 10_000
    return config


def lambda_sweep(lambdas=LAMBDAS) -> list[dict]:
    return [{"model.lmbda": float(lmbda)} for lmbda in lambdas]
