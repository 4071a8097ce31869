"""The C3 recipe shared by the per-image configs (Kim et al. 2023, arXiv 2312.02753).

Not a runnable config on its own: `c3_kodak.py`, `c3_clic2020.py`, `coolchic.py` and
`c3_quickstart.py` start from `get_base_config()` and change what differs.
"""

from ml_collections import config_dict

# The 14 rate points of C3's RD curves (lambda 1e-2 ~ 0.1 bpp, 1e-4 ~ 1.4 bpp on Kodak).
LAMBDAS = (1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 8e-4, 1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 8e-3, 1e-2, 2e-2)
# Steps searched for network weights and biases (81 pairs). C3 searches 7 steps from 5e-5
# to 1e-2; we search the powers of two that span that range, so that the quantised
# parameters are exactly fixed-point numbers for the integer decoder (docs/bitstream.md).
NETWORK_QUANTIZATION_STEPS = tuple(2.0**-k for k in range(14, 5, -1))


def get_base_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    config.name = "c3"
    config.seed = 0

    config.data = config_dict.ConfigDict()
    config.data.name = "folder"  # folder | kodak | tfds | scipy_face
    config.data.root = ""  # image folder ("" = the default cache for kodak)
    config.data.index = -1  # which image of the sorted folder; -1 for all
    config.data.tfds_name = ""
    config.data.tfds_split = "test"
    config.data.kodak_url = "http://r0k.us/graphics/kodak/kodak"
    config.data.num_images = 0  # size of the dataset's sweep (get_hyper)

    config.model = config_dict.ConfigDict()
    config.model.name = "c3"
    config.model.lmbda = 1e-3
    config.model.num_grids = 7
    config.model.q_step = 0.4
    config.model.gain_factor = 2.0
    # Grid k's parameters are multiplied by latent_gain * gain_factor^k before
    # quantisation (C3: 1 x 2^k; Cool-chic 5: 16 x q_step for every grid). Training only.
    config.model.latent_gain = 1.0
    config.model.synthesis_hidden = (18, 18)
    config.model.num_residual_layers = 2
    config.model.residual_kernel_size = 3
    config.model.arm_hidden = (18, 18)
    config.model.context_rows_cols = 3
    config.model.use_prev_grid = False
    config.model.prev_kernel_size = 3
    config.model.shift_log_scale = 8.0
    config.model.scale_range = (1e-3, 150.0)
    config.model.gelu_approximate = True  # C3's JAX code uses the tanh approximation
    # Gradient of the output clip in training: "hard" is C3's (no gradient outside
    # [0, 1]); "straight_through" keeps one, so a fit cannot get stuck there.
    config.model.output_clip = "straight_through"
    # "bilinear": C3's fixed resize; "learned": Cool-chic 5's learned separable
    # upsampling cascade (models/c3/upsampling.py; 48 more parameters for 7 grids).
    config.model.upsampling = "bilinear"
    # "image": lossy C3; "lossless": the synthesis predicts each pixel's distribution
    # and the file codes the pixels with it (models/c3/lossless.py, configs/c3_lossless.py).
    config.model.output = "image"
    # Lossless only: a causal pixel context of this many neighbours (0: none) and its
    # MLP's hidden widths (models/c3/lossless.py PixelContext).
    config.model.pixel_neighbours = 0
    config.model.pixel_hidden = (16, 16)
    # Cool-chic 5's synthesis ("hop"): synthesis_hidden=(48,), "relu", a linear 1x1
    # stabiliser from the latents added to the output, and init "cool_chic" (kernels
    # U(+-1/(C_out^2 sqrt(C_in)))). C3's: (18, 18), "gelu", no stabiliser, "fan_in".
    config.model.synthesis_activation = "gelu"
    config.model.synthesis_stabiliser = False
    config.model.synthesis_init = "fan_in"
    # Cool-chic 5's inter-grid context (models/c3/intergrid.py): the context model of the
    # `inter_grid_grids` finest grids also sees `inter_grid_features` features computed
    # from the coarser grids, decoded first (CC5: 6 features for 3 grids); 0 is C3's
    # context model. `num_hyperlatents` extra coarse grids feed only the context model
    # (CC5: 3 below 1 MP, at 1/16, 1/32 and 1/64); they need inter-grid features.
    config.model.inter_grid_features = 0
    config.model.inter_grid_grids = 3
    config.model.num_hyperlatents = 0
    # Cool-chic 5's context model ("14,2/stabiliser", models/c3/context.py):
    # `context_neighbours` N > 0 reads its first N priority-ordered neighbours in a 9x9
    # window (0: C3's raster window of `context_rows_cols`); `arm_residual` makes the
    # hidden layers x <- ReLU(x + W x + b) of the input width (`arm_hidden` must repeat
    # it, e.g. (20, 20) for 14 neighbours + 6 inter-grid features) plus a linear
    # stabiliser from the inputs to the output.
    config.model.context_neighbours = 0
    config.model.arm_residual = False

    config.fit = config_dict.ConfigDict()
    config.fit.num_noise_steps = 100_000
    config.fit.max_ste_steps = 10_000
    # Stage 1's learning rate, cosine-decayed to learning_rate_end (C3: 0; Cool-chic 5's
    # eta_min: 1e-5).
    config.fit.learning_rate = 1e-2
    config.fit.learning_rate_end = 0.0
    # Global-norm gradient clipping: of all gradients (C3) or, with grad_clip_latents =
    # False, of the network gradients alone, the latents unclipped (Cool-chic 5).
    config.fit.grad_clip = 0.1
    config.fit.grad_clip_latents = True
    # Lossless C3's causal pixel context learns at this factor times the learning rate.
    config.fit.pixel_context_lr_factor = 1.0
    # Lossless C3 with a pixel context: weight of the synthesis means' MSE (on [0, 1],
    # before the context corrects them) added to the stage-1 loss (`C3Fitter._loss`).
    config.fit.mean_anchor = 0.0
    config.fit.adam_b1 = 0.9
    config.fit.adam_b2 = 0.999
    config.fit.adam_eps = 1e-8
    # "soap": SOAP (Vyas et al. 2024) on the network weights, Adam with SOAP's betas on the
    # network biases, Adam on the latents (Cool-chic 5's settings below); "adam": C3's.
    config.fit.optimizer = "adam"
    config.fit.soap_b1 = 0.95
    config.fit.soap_b2 = 0.95
    config.fit.soap_shampoo_beta = 0.95
    config.fit.soap_eps = 1e-8
    config.fit.soap_weight_decay = 0.01
    config.fit.soap_precondition_every = 10
    config.fit.temperature_start = 0.3
    config.fit.temperature_end = 0.1
    config.fit.kumaraswamy_start = 2.0
    config.fit.kumaraswamy_end = 1.0
    # Stage-1 proxy: "kumaraswamy" (C3: soft-round, Kumaraswamy noise, conditional mean)
    # or "gaussian" (Cool-chic 5: Gaussian noise of std noise_std_start -> _end, linear,
    # between two soft-roundings; Cool-chic 5 pairs it with temperature 0.35 -> 0.08).
    config.fit.noise = "kumaraswamy"
    config.fit.noise_std_start = 0.22
    config.fit.noise_std_end = 0.15
    config.fit.ste_temperature = 1e-4
    config.fit.ste_learning_rate = 1e-4
    config.fit.ste_patience = 20
    config.fit.ste_lr_decay = 0.8
    config.fit.ste_min_learning_rate = 1e-8
    config.fit.weight_steps = NETWORK_QUANTIZATION_STEPS
    config.fit.bias_steps = NETWORK_QUANTIZATION_STEPS
    # The learned upsampling's taps have their own step (its 48 taps would otherwise
    # pull every network to a finer weight step): searched after the (weight, bias) pair.
    config.fit.upsampling_steps = tuple(2.0**-k for k in range(12, 3, -1))
    # Cool-chic 5's per-module steps: after the shared pair, a (weight, bias) pair for
    # the context model, then one for the synthesis (greedy; 2 header bytes). Off: C3's
    # one pair for all networks.
    config.fit.per_module_steps = False
    # Per-tensor steps (ours): after the module steps, each tensor's step x 1/4 ... 4 while
    # the RD loss falls, in up to `tensor_step_sweeps` sweeps (4-bit shifts in the header).
    config.fit.per_tensor_steps = False
    config.fit.tensor_step_sweeps = 2
    # The network bits the quantisation search minimises: "laplace" (C3's estimate) or
    # "file" (the exact bits of the code the file writes for each tensor).
    config.fit.network_rate = "laplace"
    # RDOQ (Cool-chic 5): after the step search, move each network integer by up to
    # +-rdoq_max_delta steps while that lowers the RD loss counted with the file's bits.
    config.fit.rdoq = False
    config.fit.rdoq_max_delta = 15
    # Passes over all integers (Cool-chic 5: 1); stops after one that changes nothing.
    config.fit.rdoq_passes = 1
    # A fit that is not learning (RD loss above 1.5x a flat mean-colour image's, or down by
    # less than 10 %) after `stall_check_steps` stage-1 steps or at the end of stage 1 is
    # restarted from another seed at `restart_lr_factor` x the learning rate, at most
    # `max_restarts` times; then the encoder fails with one line.
    # Warm-up (Cool-chic 5): `warmup_candidates` initialisations x `warmup_steps` stage-1
    # steps, the `warmup_keep` best x `warmup_steps` more, the best one continues; every
    # candidate step counts as an iteration. 0 or 1 candidate: off (C3's recipe).
    config.fit.warmup_candidates = 0
    config.fit.warmup_keep = 2
    config.fit.warmup_steps = 50
    # Keep-best (Cool-chic 5): every `keep_best_every` stage-1 steps, keep the parameters if
    # their hard-rounded RD loss is the best so far; restore them when stage 1 ends if the
    # last ones are worse. 0: off (C3's recipe). Checked at chunk ends (`log_every`).
    config.fit.keep_best_every = 0
    # Rollback (with keep-best): at a keep-best check, a hard-rounded RD loss above
    # (1 + rollback_tolerance) x the kept one is a diverging fit: back to the kept
    # parameters with fresh optimiser state and half the learning rate (logged, counted
    # in `rollbacks`). 0: off.
    config.fit.rollback_tolerance = 0.0
    config.fit.stall_check_steps = 100
    config.fit.max_restarts = 2
    config.fit.restart_lr_factor = 0.5
    config.fit.log_every = 100  # steps per compiled chunk: progress, TensorBoard, NaN rewind
    config.fit.checkpoint_every = 5000
    # XLA: 3.8x slower at 256x256, 2.5 % faster at 768x512 on a 2-core CPU
    # (benchmarks/fit_speed.py); switch it on for GPUs.
    config.fit.jit_compile = False
    # Batched fitting (models/c3/batched.py): "1e-4,2e-3,..." fits the image at every one
    # of these lambdas in one compiled step (one file and results row per lambda, named
    # <image>@<lambda>); "" fits at model.lmbda alone.
    config.fit.lambdas = ""
    # Rate control (codec.py encode --target_bpp / --target_bytes, pipelines/rate_control.py):
    # a batched fit at these lambdas brackets the target, then up to `fresh_fits` whole
    # fits from scratch and then warm-started ones (each `refine_fraction` of the
    # schedule at `refine_lr_factor` x the learning rate), `max_refinements` in all,
    # move lambda along the log-log secant until the file is within `tolerance` of the
    # target.
    config.fit.rate_control_lambdas = "1e-4,6e-4,3.5e-3,2e-2"
    config.fit.rate_control_fresh_fits = 3
    config.fit.rate_control_refine_fraction = 0.25
    config.fit.rate_control_refine_lr_factor = 0.3
    config.fit.rate_control_max_refinements = 8
    config.fit.rate_control_tolerance = 0.02
    # Per-image architecture choice (pipelines/architecture.py, C3-Adaptive): each
    # candidate is a dict of model overrides; all are fitted together for `steps` stage-1
    # steps and the best by RD loss continues. () : off. max_macs bounds the decoder's
    # MACs per pixel (also without candidates); 0: no bound. codec.py --max_macs sets it.
    config.arch_search = config_dict.ConfigDict()
    config.arch_search.candidates = ()
    config.arch_search.steps = 200
    config.arch_search.max_macs = 0
    return config


def image_lambda_set_sweep(num_images: int, lambdas=LAMBDAS, per_unit: int = 7) -> list[dict]:
    """One work unit per (image, set of `per_unit` lambdas), each set fitted by one
    batched fit (`fit.lambdas`): images outer, sets inner."""
    sets = [lambdas[k : k + per_unit] for k in range(0, len(lambdas), per_unit)]
    return [
        {"data.index": i, "fit.lambdas": ",".join(f"{lmbda:g}" for lmbda in lambda_set)}
        for i in range(num_images)
        for lambda_set in sets
    ]


def image_lambda_sweep(num_images: int, lambdas=LAMBDAS) -> list[dict]:
    """One work unit per (image, lambda): images outer, lambdas inner."""
    return [{"data.index": i, "model.lmbda": lmbda} for i in range(num_images) for lmbda in lambdas]
