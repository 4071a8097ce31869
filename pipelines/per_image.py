"""The per-image pipeline: fit C3 to each selected image, write its file, decode, measure.

For a per-image codec, fitting is encoding (`C3Codec`). For every image of `config.data`
the pipeline (`run`, registered for the "per_image" family):

1. fits the model, resuming from the image's checkpoint if the run was interrupted
   (`FitCheckpoints`), with log lines and TensorBoard scalars (`FitLog`);
2. writes the file (`bitstreams/<image>.c3`) and decodes it as a receiver would;
3. records the measured bpp (file size) and the PSNR of the *decoded* image beside the
   fit's estimates (`c3_row`), the decoded PNG and one results JSON;

then the aggregate over images. A finished image (its results JSON exists) is skipped on
rerun.
"""

import dataclasses
import functools
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from coding import weights
from coding.c3 import codec as c3_codec
from coding.c3 import networks as c3_networks
from coding.interface import Codec
from common import device, preemption, results
from common.config import config_hash
from common.datasets import load_images
from common.errors import ConfigError, FitError
from common.files import atomic_write_bytes
from common.images import to_float, write_png
from common.progress import Progress
from models import registry
from models.c3.batched import BatchedFit
from models.c3.fit import C3Fitter, FitResult
from pipelines import architecture
from pipelines.registry import register_pipeline

BITSTREAM_SUFFIX = ".c3"


def make_fitter(model, fit_config) -> C3Fitter:
    """A `C3Fitter` that knows the exact bits of the code the file writes for each
    network tensor (`coding.weights.code_costs`): the network quantisation search counts
    them with `fit.network_rate = "file"` (else C3's Laplace estimate), RDOQ always; and
    the steps the file can carry (`coding.c3.networks.steps_problem`)."""
    steps_problem = functools.partial(c3_networks.steps_problem, model.get_config())
    return C3Fitter(model, fit_config, weights.code_costs, steps_problem)


def fitter_steps(fitter: C3Fitter | list[C3Fitter]) -> int:
    """Steps done so far in both stages (summed over the members of a batched fit)."""
    if isinstance(fitter, list):
        return sum(fitter_steps(f) for f in fitter)
    return int(fitter.noise_step.numpy()) + int(fitter.ste_step.numpy())


def parse_lambdas(text: str, field: str, error=FitError) -> list[float]:
    """Comma-separated distinct positive lambdas ("1e-4,2e-3,..."), as `fit.lambdas`
    and `fit.rate_control_lambdas` hold them; `error` (naming `field`) otherwise."""
    try:
        lambdas = [float(x) for x in text.replace(" ", "").strip("()[]").split(",") if x]
    except ValueError:
        raise error(
            f"{field} must be comma-separated numbers (e.g. 1e-4,2e-3), got {text!r}."
        ) from None
    if not lambdas or min(lambdas) <= 0 or len(set(lambdas)) != len(lambdas):
        raise error(f"{field} must be distinct positive numbers, got {text!r}.")
    return lambdas


def batched_lambdas(config) -> bool:
    """Whether the config fits several lambdas together (`fit.lambdas` is set)."""
    return bool(str(config.fit.get("lambdas", "") or "").strip())


def fit_lambdas(config) -> list[float]:
    """The lambdas of a work unit: `fit.lambdas` ("1e-4,2e-3,...", fitted together by one
    batched fit, `models.c3.batched`), else the one `model.lmbda`."""
    if not batched_lambdas(config):
        return [float(config.model.lmbda)]
    return parse_lambdas(str(config.fit.lambdas), "fit.lambdas")


def encode_and_verify(fitter: C3Fitter, fit: FitResult, what: str, image=None):
    """Writes the bitstream of a fitted model and decodes it as a receiver would.

    `image` is the 8-bit original, which a lossless model's file codes (and its decoding
    must return exactly). Returns (EncodedC3, DecodedC3); the image to report is the
    decoded one.
    """
    lossless = fitter.model.lossless
    if lossless and image is None:
        raise ValueError("a lossless model's file needs the 8-bit image it codes.")
    encoded = c3_codec.encode(fitter.model, *fit.steps, image=image if lossless else None)
    decoded = c3_codec.decode(encoded.data, what=what)
    if lossless and not np.array_equal(decoded.image, image):
        raise FitError(f"{what}: the lossless file does not decode to the image (a bug).")
    sent = fitter.model.symbols()
    same = all(np.array_equal(a, b) for a, b in zip(decoded.symbols, sent, strict=True))
    if not same and not encoded.clipped_latents:
        raise FitError(f"{what}: the decoder's latents differ from the encoder's (a bug).")
    return encoded, decoded


def encoding_of(fitter: C3Fitter, fit: FitResult, fit_seconds: float, what: str, image, **fields):
    """The `C3Encoding` of a fitted model: its file written and verified
    (`encode_and_verify`), its decoder's MACs; `fields` the optional ones."""
    encoded, decoded = encode_and_verify(fitter, fit, what, image)
    return C3Encoding(fit, fit_seconds, encoded, decoded, fitter.model.macs_per_pixel(), **fields)


@dataclasses.dataclass(frozen=True)
class C3Encoding:
    """Everything one C3 encoding produced: the fit, the file, and its decoding."""

    fit: FitResult
    fit_seconds: float
    encoded: c3_codec.EncodedC3
    decoded: c3_codec.DecodedC3
    macs_per_pixel: dict
    batch_seconds: float | None = None  # a batched fit's whole wall time (fit_seconds: / N)
    batch_lambdas: list | None = None  # the lambdas fitted together with this one
    architecture: dict | None = None  # the per-image choice (`pipelines.architecture`)


class FitCheckpoints:
    """The checkpoints of one image's fit: restored before it, saved every
    `fit.checkpoint_every` steps and when a stop is requested (SIGTERM)."""

    def __init__(self, directory: str, every: int, name: str):
        self._directory, self._every, self._name = directory, int(every), name
        self._manager = None
        self._last_saved = 0

    def restore(self, fitter: C3Fitter | list[C3Fitter]) -> None:
        """Restores `fitter` (or the members of a batched fit, a list) if a checkpoint
        exists."""
        if isinstance(fitter, list):
            checkpoint = tf.train.Checkpoint(members=fitter)
        else:
            checkpoint = tf.train.Checkpoint(fitter=fitter)
        self._manager = tf.train.CheckpointManager(checkpoint, self._directory, max_to_keep=1)
        if self._manager.latest_checkpoint:
            checkpoint.restore(self._manager.latest_checkpoint).expect_partial()
            logging.info(
                "%s: resuming from %s (%d steps done).",
                self._name,
                self._manager.latest_checkpoint,
                fitter_steps(fitter),
            )
        self._last_saved = fitter_steps(fitter)

    def after_chunk(self, fitter: C3Fitter | list[C3Fitter]) -> None:
        """Called between compiled chunks of steps: saves when due or when stopping."""
        if preemption.requested():
            self._manager.save()
            raise preemption.Preempted(
                f"{self._name}: stop requested (SIGTERM); saved a checkpoint at step "
                f"{fitter_steps(fitter)}. A rerun resumes from it."
            )
        if self._every > 0 and fitter_steps(fitter) - self._last_saved >= self._every:
            self._manager.save()
            self._last_saved = fitter_steps(fitter)

    def save(self) -> None:
        self._manager.save()


class FitLog:
    """Log lines ("stage step k of N, time left") and TensorBoard scalars of one image's
    fit (`log_fn` of `C3Fitter.fit`)."""

    def __init__(self, name: str, fit_config, tensorboard_dir: str | None = None):
        self._name = name
        self._totals = {
            "noise": int(fit_config.num_noise_steps),
            "ste": int(fit_config.max_ste_steps),
        }
        self._progress = {}
        self._writer = tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir else None

    def __call__(self, stage: str, step: int, values: dict) -> None:
        if stage not in self._progress:  # the clock starts after the first (tracing) chunk
            self._progress[stage] = Progress(self._totals.get(stage, step), done=step)
        progress = self._progress[stage]
        progress.update(step)
        logging.info(
            "%s%s step %s: loss %.6g, PSNR %.3f dB, latents %.4f bpp",
            f"{self._name} " if self._name else "",
            stage,
            progress,
            values["loss"],
            values["psnr"],
            values["bpp_latents"],
        )
        if self._writer is not None:
            global_step = step if stage == "noise" else self._totals["noise"] + step
            with self._writer.as_default(step=global_step):
                for key, value in values.items():
                    tf.summary.scalar(f"{stage}/{key}", value)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()


class C3Codec(Codec):
    """C3 / COOL-CHIC as a codec: encoding fits the model to the image (that is C3's
    encoder), decoding needs nothing but the file.

    One model and compiled fitter per image shape, reused across images of that shape.

      codec = C3Codec(config)               # config: configs/c3_kodak.py and the like
      data = codec.encode(image)            # fit + file
      encoding = codec.fit_and_encode(image, log_fn)   # with the fit's details
      image = codec.decode(data)
    """

    def __init__(self, config, jit: bool = True):
        if registry.family(config.model.name) != "per_image":
            raise FitError(f"C3Codec codes per-image models, not {config.model.name!r}.")
        self.config = config
        self.jit = jit
        self.name = config.name
        self.description = (
            f"{config.name}: {config.model.name} fitted to each image at lambda "
            f"{float(config.model.lmbda):g}, {config.fit.num_noise_steps} + "
            f"{config.fit.max_ste_steps} steps"
        )
        self._fitters = {}
        self._batches = {}  # (height, width, N): the BatchedFit of the first N fitters
        self._search = None  # the architecture choice's candidates, if any
        device.log_once()

    def fitter(self, height: int, width: int) -> C3Fitter:
        return self.fitters(height, width, 1)[0]

    def fitters(self, height: int, width: int, count: int) -> list[C3Fitter]:
        """`count` fitters for images of this size (built once, reused)."""
        built = self._fitters.setdefault((height, width), [])
        while len(built) < count:
            model = registry.build_model(self.config.model, height=height, width=width)
            built.append(make_fitter(model, self.config.fit))
        return built[:count]

    def encode(self, image: np.ndarray) -> bytes:
        return self.fit_and_encode(image).encoded.data

    def decode(self, data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
        return c3_codec.decode(data, jit=self.jit).image

    def fit_and_encode(
        self,
        image: np.ndarray,
        log_fn=None,
        checkpoints: FitCheckpoints | None = None,
        what: str = "bitstream",
        lmbda: float | None = None,
    ) -> C3Encoding:
        """Fits a fresh model (from `config.seed`, or the checkpoint) and writes its file;
        with `arch_search.candidates`, the model is the candidate chosen for this image
        (`pipelines.architecture`). `lmbda`: the fit's, if not `model.lmbda` (one codec,
        its graphs traced once, fits any lambda)."""
        lmbda = float(self.config.model.lmbda if lmbda is None else lmbda)
        seed = self.config.seed
        chosen = None
        if architecture.searching(self.config):
            if self._search is None:
                self._search = architecture.ArchitectureSearch(self.config, make_fitter)
            fitter, chosen = self._search.choose(image, lmbda, seed)
        else:
            fitter = self.fitter(*image.shape[:2])
            architecture.check_max_macs(self.config, fitter.model.macs_per_pixel()["total"])
            fitter.reset(to_float(image), lmbda, seed)
        checkpoint_fn = None
        if checkpoints is not None:
            checkpoints.restore(fitter)
            checkpoint_fn = functools.partial(checkpoints.after_chunk, fitter)
        start = time.perf_counter()
        fit = fitter.fit(log_fn, checkpoint_fn)
        fit_seconds = time.perf_counter() - start
        if checkpoints is not None:
            checkpoints.save()
        return encoding_of(fitter, fit, fit_seconds, what, image, architecture=chosen)

    def fit_and_encode_lambdas(
        self,
        image: np.ndarray,
        lambdas: list[float],
        log_fns=None,
        checkpoints: FitCheckpoints | None = None,
        whats: list[str] | None = None,
    ) -> list[C3Encoding]:
        """Fits one model per lambda to `image` in one batched fit (`models.c3.batched`;
        every member from `config.seed`) and writes their files. Each encoding's
        `fit_seconds` is the batch's wall time divided by the number of lambdas (the time
        per rate point); `batch_seconds` the whole."""
        if architecture.searching(self.config):
            raise ConfigError(
                "arch_search (per-image architecture choice) and a batched fit of several "
                "lambdas (fit.lambdas, rate control) do not combine yet; use one."
            )
        key = (*image.shape[:2], len(lambdas))
        fitters = self.fitters(*key)
        if key not in self._batches:  # one per shape and N: traced once, reused
            self._batches[key] = BatchedFit(fitters)
        architecture.check_max_macs(self.config, fitters[0].model.macs_per_pixel()["total"])
        for fitter, lmbda in zip(fitters, lambdas, strict=True):
            fitter.reset(to_float(image), float(lmbda), self.config.seed)
        checkpoint_fn = None
        if checkpoints is not None:
            checkpoints.restore(fitters)
            checkpoint_fn = functools.partial(checkpoints.after_chunk, fitters)
        start = time.perf_counter()
        fits = self._batches[key].fit(log_fns, checkpoint_fn)
        seconds = time.perf_counter() - start
        if checkpoints is not None:
            checkpoints.save()
        whats = whats or [f"lambda {lmbda:g}" for lmbda in lambdas]
        return [
            encoding_of(
                fitter,
                fit,
                seconds / len(lambdas),
                what,
                image,
                batch_seconds=seconds,
                batch_lambdas=list(lambdas),
            )
            for fitter, fit, what in zip(fitters, fits, whats, strict=True)
        ]


def c3_row(
    config, name: str, image: np.ndarray, encoding: C3Encoding, bitstream: str, lmbda=None
) -> dict:
    """The results row of one C3 file, with the fit's estimates and diagnostics beside it
    (`lmbda`: the fit's, if not `model.lmbda`)."""
    fit, encoded, decoded = encoding.fit, encoding.encoded, encoding.decoded
    pixels = image.shape[0] * image.shape[1]
    coded = encoded.bits_latents + encoded.bits_networks + encoded.bits_pixels
    estimated = fit.bits_latents + fit.bits_networks + fit.bits_pixels
    extras = {}
    if encoding.architecture is not None:
        extras["architecture"] = encoding.architecture
    if encoding.batch_lambdas is not None:  # fitted together with other lambdas
        extras.update(batch_lambdas=encoding.batch_lambdas, batch_seconds=encoding.batch_seconds)
    lossless = {}
    if encoded.bits_pixels:  # lossless C3
        lossless = dict(
            lossless=True,
            bpp_pixels=fit.bits_pixels / pixels,
            bpp_pixels_coded=encoded.bits_pixels / pixels,
            pixel_steps=list(fit.pixel_steps) if fit.pixel_steps else None,
        )
    return results.row_from_file(
        image=name,
        model=config.name,
        original=image,
        data=encoded.data,
        decoded=decoded.image,
        encode_seconds=encoding.fit_seconds + encoded.seconds,
        decode_seconds=decoded.seconds,
        lmbda=float(config.model.lmbda if lmbda is None else lmbda),
        bpp_estimated=estimated / pixels,
        bpp_latents=fit.bits_latents / pixels,
        bpp_networks=fit.bits_networks / pixels,
        bpp_header=encoded.bits_header / pixels,
        steps=fit.iterations,
        macs_per_pixel=encoding.macs_per_pixel["total"],
        bitstream=bitstream,
        config_hash=config_hash(config),
        bpp_latents_coded=encoded.bits_latents / pixels,
        bpp_networks_coded=encoded.bits_networks / pixels,
        coded_over_estimate=coded / max(estimated, 1e-9),
        psnr_fit=None if lossless else fit.psnr,
        entropy_coding_seconds=encoded.seconds,
        macs_per_pixel_parts=encoding.macs_per_pixel,
        noise_steps=fit.noise_steps,
        ste_steps=fit.ste_steps,
        iterations=fit.iterations,
        seconds_warmup=fit.seconds_warmup,
        seconds_noise=fit.seconds_noise,
        seconds_ste=fit.seconds_ste,
        seconds_quantization=fit.seconds_quantization,
        rdoq=dataclasses.asdict(fit.rdoq) if fit.rdoq else None,
        weight_step=fit.weight_step,
        bias_step=fit.bias_step,
        upsampling_step=fit.upsampling_step,
        arm_steps=list(fit.arm_steps) if fit.arm_steps else None,
        step_shifts=list(fit.step_shifts) if fit.step_shifts else None,
        bits_per_grid=fit.bits_per_grid,
        bits_per_network=fit.bits_per_network,
        nan_recoveries=fit.nan_recoveries,
        restarts=fit.restarts,
        rollbacks=fit.rollbacks,
        clipped_latents=encoded.clipped_latents,
        **lossless,
        **extras,
    )


def _log_summary(row: dict, encoding: C3Encoding) -> None:
    quality = "lossless" if row.get("lossless") else f"PSNR {row['psnr']:.3f} dB"
    logging.info(
        "%s (lambda %g): %s at %.4f bpp measured (%d bytes; estimate %.4f bpp: latents "
        "%.4f + networks %.4f; coded/estimated %.4f, header %d bytes), %d steps in %.1f s, "
        "decoded in %.2f s.",
        row["image"],
        row["lmbda"],
        quality,
        row["bpp"],
        len(encoding.encoded.data),
        row["bpp_estimated"],
        row["bpp_latents"],
        row["bpp_networks"],
        row["coded_over_estimate"],
        encoding.encoded.bits_header // 8,
        row["steps"],
        encoding.fit_seconds,
        encoding.decoded.seconds,
    )


def _write_outputs(workdir: str, config, name: str, file_name: str, image, encoding, lmbda):
    """Writes one encoding's file, decoded PNG and results JSON; returns its row."""
    bitstream = os.path.join("bitstreams", file_name + BITSTREAM_SUFFIX)
    atomic_write_bytes(os.path.join(workdir, bitstream), encoding.encoded.data)
    write_png(os.path.join(workdir, "reconstructions", f"{file_name}.png"), encoding.decoded.image)
    row = c3_row(config, name, image, encoding, bitstream, lmbda)
    results.write_result(results.result_path(workdir, file_name), row)
    _log_summary(row, encoding)
    return row


def output_names(config, name: str) -> list[str]:
    """The names of an image's files and results JSONs: the image's, or with a batched
    fit (`fit.lambdas`) one `<image>@<lambda>` per lambda."""
    if not batched_lambdas(config):
        return [name]
    return [results.lambda_name(name, lmbda) for lmbda in fit_lambdas(config)]


def fit_one(config, name: str, image: np.ndarray, codec: C3Codec, workdir: str) -> list[dict]:
    """Fits one image (at every lambda of `fit_lambdas`, together), writes the files,
    decoded PNGs and results JSONs; returns the rows."""
    lambdas, names = fit_lambdas(config), output_names(config, name)
    logs = [FitLog(n, config.fit, os.path.join(workdir, "tensorboard", n)) for n in names]
    checkpoints = FitCheckpoints(
        os.path.join(workdir, "checkpoints", name), config.fit.checkpoint_every, name
    )
    whats = [os.path.join("bitstreams", n + BITSTREAM_SUFFIX) for n in names]
    try:
        if not batched_lambdas(config):
            encodings = [codec.fit_and_encode(image, logs[0], checkpoints, what=whats[0])]
        else:
            encodings = codec.fit_and_encode_lambdas(image, lambdas, logs, checkpoints, whats)
    finally:
        for log in logs:
            log.flush()
    return [
        _write_outputs(workdir, config, name, file_name, image, encoding, lmbda)
        for file_name, encoding, lmbda in zip(names, encodings, lambdas, strict=True)
    ]


@register_pipeline("per_image")
def run(config, workdir: str) -> list[dict]:
    """Fits every selected image; returns the results rows (also of skipped images)."""
    images = load_images(config.data)
    codec = C3Codec(config)
    rows = []
    for i, item in enumerate(images):
        paths = [results.result_path(workdir, n) for n in output_names(config, item.name)]
        if all(os.path.exists(path) for path in paths):
            logging.info("%s: already finished (%s), skipping.", item.name, paths[0])
            for path in paths:
                rows.extend(results.read_results(path))
            continue
        image = item.load()
        logging.info(
            "Image %d/%d: %s (%dx%d), lambda %s.",
            i + 1,
            len(images),
            item.name,
            image.shape[1],
            image.shape[0],
            ", ".join(f"{lmbda:g}" for lmbda in fit_lambdas(config)),
        )
        rows.extend(fit_one(config, item.name, image, codec, workdir))
    results.write_aggregate(
        os.path.join(workdir, "results.json"),
        rows,
        config.name,
        f"{config.name}: per-image fits; bpp measured from the bitstream files.",
    )
    logging.info("Results in %s", os.path.join(os.path.abspath(workdir), "results"))
    return rows
