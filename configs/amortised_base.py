"""The shallow-ntc training recipe shared by the amortised codecs (Yang & Mandt, ICCV 2023).

Not a runnable config on its own: `bls2017.py`, `mbt2018_mean.py`, `jpegl.py`,
`two_layer_syn.py` and `two_layer_syn2.py` start from `get_base_config(name)` and set
their transforms. Defaults are the full recipe: 2M steps of batch 8 256x256 crops,
Adam 1e-4 with 2 % warm-up and x0.1 after 80 %, global clip-norm 1, lambda x10 for
the first 20 % of steps when lambda <= 0.01.
"""

from ml_collections import config_dict

# The seven rate points of shallow-ntc's sweeps (loss = bpp + lambda * MSE on 0..255).
LAMBDAS = (0.08, 0.04, 0.02, 0.01, 0.005, 0.0025, 0.00125)


def get_base_config(name: str) -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    config.name = name
    config.seed = 0

    # Training crops: a local folder of images (searched recursively) or a
    # tensorflow-datasets dataset (downloaded on first use, e.g. CLIC 2020's train split).
    config.data = config_dict.ConfigDict()
    config.data.name = "tfds"  # folder | tfds
    config.data.root = ""  # folder of images (data.name=folder) or tfds data_dir
    config.data.tfds_name = "clic"
    config.data.tfds_split = "train"
    config.data.patch_size = 256
    config.data.shuffle_buffer = 256

    # Periodic validation on whole images (Kodak by default, downloaded and verified).
    config.val = config_dict.ConfigDict()
    config.val.name = "kodak"  # kodak | folder | none
    config.val.root = ""
    config.val.kodak_url = "http://r0k.us/graphics/kodak/kodak"
    config.val.max_images = 24

    config.model = config_dict.ConfigDict()
    config.model.name = name
    config.model.lmbda = 0.01
    config.model.quantization = "noise"  # noise | mixed (noisy rate, rounded synthesis input)
    config.model.analysis = "gdn"  # gdn | elic | cnn
    config.model.analysis_channels = (192, 192, 192)  # then latent_channels
    config.model.elic_residual_blocks = 3
    config.model.synthesis = "gdn"  # gdn | jpeg_like | two_layer
    config.model.synthesis_channels = (192, 192, 192)
    config.model.two_layer_residual = True
    config.model.latent_channels = 320
    config.model.hyper_channels = 320  # 0: factorized prior, no hyperprior
    config.model.hyper_synthesis_channels = (320, 480)

    config.train = config_dict.ConfigDict()
    config.train.num_steps = 2_000_000
    config.train.batch_size = 8
    config.train.learning_rate = 1e-4
    config.train.warmup_fraction = 0.02
    config.train.decay_after = 0.8  # fraction of steps after which the rate drops
    config.train.decay_factor = 0.1
    config.train.clip_norm = 1.0
    config.train.lambda_warmup_factor = 10.0  # for lambda <= lambda_warmup_max
    config.train.lambda_warmup_fraction = 0.2
    config.train.lambda_warmup_max = 0.01
    config.train.log_every = 100  # steps per compiled chunk: logging, TensorBoard, SIGTERM
    config.train.checkpoint_every = 5000
    config.train.validate_every = 10_000
    config.train.keep_checkpoints = 2
    config.train.jit_compile = False
    return config


def lambda_sweep(lambdas=LAMBDAS) -> list[dict]:
    return [{"model.lmbda": lmbda} for lmbda in lambdas]
