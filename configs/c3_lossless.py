"""Lossless C3: the fitted synthesis predicts each pixel's distribution (issue 15).

C3's Kodak decoder and recipe with 9 synthesis outputs per pixel instead of 3: a
discretised Laplace per 8-bit value (mean and scale) with R -> G -> B coupling of the
means (models/c3/lossless.py); the file holds the latents, the networks and the pixels
range coded with those distributions, plus a CRC-32 of the original that the decoder
checks. The loss is the total bits: lambda only scales it (1e-4 keeps it near the lossy
recipe's magnitude, so its learning rates and clipping apply). The network steps are
searched per module (`fit.per_module_steps`): the context model, the synthesis and the
pixel context each get a pair, and then each tensor its own step around its module's
(`fit.per_tensor_steps`, as in c3_plus). RDOQ (`fit.rdoq`) refines the network integers on the
total bits too, but is off: on the 256x256 kodim23 crop it took longer than the fit
itself for a 0.5 % smaller file (docs/c3.md). Gradients are clipped as Cool-chic 5
clips them, the networks' alone
(`fit.grad_clip_latents = False`): with C3's clipping of all gradients together, the
latents' (large where a narrow prediction misses) set the networks' step, and fits on a
256x256 crop lost ground again and again (pixel bits up 10-100 % within 100 steps, at lr
1e-2 and 5e-3; a 10x smaller clip was worse); clipping the networks alone, the same fit
fell steadily (docs/c3.md). Keep-best (every 100 stage-1 steps) stays on as a guard.

The causal pixel context (`models.c3.lossless.PixelContext`): an MLP (16, 16) plus a
linear path sees the prediction errors of the 12 nearest causal pixels, each (x - 255 m)
/ 16, and the pixel's means and ln-scales, and corrects its distribution; the pixels are
then decoded in wavefronts. The context learns at 0.03 x the learning rate. On a 256x256
kodim23 crop (seed 0; one run each, no JSON): errors / 256 at 0.1 x fell slowly (10.41 bpp
of pixels + latents at step 1000 of 1000, keep-best off); errors / 16 at 0.1 x blew up by
step 200 (thousands of bits per pixel), at 0.03 x fell to 8.75 bpp at step 1000 (keep-best
off). In this config's schedule (1800 + 200 steps) fits still blow up now and then, after
several hundred steps, at lr 1e-2 (0.03 x) and at 5e-3 (0.06 x) alike: 2 and 3 rollbacks,
3.201 and 3.264 bpsp from the files. The cause (docs/c3.md): the context's linear path
learns a DPCM predictor from the neighbours' errors (its weights sum to ~1), under which a
smooth shift of the synthesis's means changes nothing, so Adam lets them drift out of
[0, 1] until the clips break the fit. `fit.mean_anchor` (the synthesis means' MSE times a
weight, added to the training loss) gives that direction a floor: at 1e-3 the crops whose
fits blew up came out 0.6-55 % smaller (kodim14's, 5 rollbacks without it, 8.47 -> 3.83
bpsp), crops that never blew up -0.2 to +1.4 % (docs/c3.md has the table). Rollback
(`fit.rollback_tolerance`) still contains what blow-ups remain: back to the kept
parameters with fresh optimiser state and half the learning rate. Without the context
the fit was at 13.6 bpp at step 400.

python codec.py encode --config configs/c3_lossless.py -i IMAGE.png -o IMAGE.c3
python train.py --config configs/c3_lossless.py [--config.data.root=DIR]
"""

from configs import c3_base, c3_kodak


def get_config():
    config = c3_kodak.get_config()
    config.name = "c3_lossless"
    config.model.output = "lossless"
    config.model.lmbda = 1e-4
    config.model.pixel_neighbours = 12
    config.model.pixel_hidden = (16, 16)
    config.fit.pixel_context_lr_factor = 0.03
    config.fit.mean_anchor = 1e-3
    config.fit.rdoq = False
    config.fit.grad_clip_latents = False
    config.fit.keep_best_every = 100
    config.fit.rollback_tolerance = 0.25
    # Cool-chic 5's per-module network steps, and the pixel context its own pair: it
    # needs 8-16x finer steps than the synthesis, which one shared pair imposed on both.
    config.fit.per_module_steps = True
    # Then each tensor's own step (x 1/4 ... 4 around its module's; 4 header bits per
    # tensor, kept only if they pay): on a 32x48 test image the network bits fell 29 %.
    config.fit.per_tensor_steps = True
    return config


def get_hyper():
    """One work unit per Kodak image: lossless has no rate points."""
    return c3_base.image_lambda_sweep(24, lambdas=(1e-4,))
