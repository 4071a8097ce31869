"""Encode an image to a C3 / COOL-CHIC bitstream, or decode a bitstream to a PNG.

python codec.py encode -i img.png -o img.c3 --config configs/c3_kodak.py
                [--config.model.lmbda=1e-3] [--config.fit.num_noise_steps=...]
                [--reconstruction decoded.png]
python codec.py encode -i img.png -o img.c3 --config configs/c3_kodak.py --target_bpp 0.25
                [--target_bytes 12288]   # rate control: the lambda that gives this size
python codec.py encode -i img.png -o img.c3 --config configs/c3_adaptive.py --max_macs 1500
python codec.py decode -i img.c3 -o out.png [--nojit]
python codec.py encode -i clip.y4m -o clip.c3v --config configs/c3_video.py   # C3 video
python codec.py decode -i clip.c3v -o decoded.y4m        # or -o FOLDER: PNG frames
python codec.py merge -o clip.c3v patches/*.c3v          # join a sweep's patch files
python codec.py encode -i img.png -o img.lz --workdir RUN   # a trained amortised model
python codec.py decode -i img.lz -o out.png --workdir RUN
python codec.py encode -i img.png -o img.lz --workdir QARV_RUN --lmbda 256   # any rate
python codec.py decode -i img.lz -o coarse.png --workdir RUN --layers 3      # a prefix

With --workdir, the codec is the trained model of that run directory (train.py with
configs/bls2017.py, mbt2018_mean.py, jpegl.py, two_layer_syn.py or two_layer_syn2.py;
RC's lossless codec, configs/rc_hevc.py or rc_c3.py; a hierarchical VAE,
configs/qres_vae*.py or qarv*.py); its files decode only with the same run directory.
A hierarchical VAE's file decodes progressively: --layers K decodes the first K latent
layers (the rest at their prior means); QARV codes at any --lmbda of its range.

Otherwise encoding fits the model to the image (that is C3's encoder), writes the file
and decodes it before reporting the measured bpp and the PSNR of the decoded image.
Decoding needs only the file.
"""

import os
import time

from absl import flags
from ml_collections import config_flags

from common.cli import run_main
from common.errors import CodecError, ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
_INPUT = flags.DEFINE_string("input", None, "Input image (encode) or bitstream (decode).")
_OUTPUT = flags.DEFINE_string("output", None, "Output bitstream (encode) or PNG (decode).")
_RECONSTRUCTION = flags.DEFINE_string(
    "reconstruction", None, "encode: also write the decoded image as this PNG."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a trained amortised model.")
_LMBDA = flags.DEFINE_float(
    "lmbda", None, "encode --workdir: the rate of a variable-rate model (QARV), in its range."
)
_LAYERS = flags.DEFINE_integer(
    "layers", None, "decode --workdir: decode only the first K latent layers (QRes-VAE, QARV)."
)
_TARGET_BPP = flags.DEFINE_float(
    "target_bpp", None, "encode --config: the file's size in bits per pixel (rate control)."
)
_TARGET_BYTES = flags.DEFINE_integer(
    "target_bytes", None, "encode --config: the file's size in bytes (rate control)."
)
_MAX_MACS = flags.DEFINE_integer(
    "max_macs",
    None,
    "encode --config: the decoder's bound in MACs per pixel (arch_search.max_macs): only "
    "candidate architectures within it, or an error if the config's model exceeds it.",
)
_JIT = flags.DEFINE_bool("jit", True, "Run the fixed-point networks through XLA (same output).")
flags.DEFINE_alias("i", "input")
flags.DEFINE_alias("o", "output")

USAGE = (
    "usage: codec.py encode|decode -i INPUT -o OUTPUT [--config CONFIG | --workdir RUN], "
    "codec.py merge -o OUTPUT FILES"
)


def _require(flag, what: str):
    if not flag.value:
        raise ConfigError(f"{what} is required. {USAGE}")
    return flag.value


def _trained_codec():
    from pipelines.trained_run import load_trained_run

    return load_trained_run(_WORKDIR.value)


def encode_trained() -> None:
    from common import metrics
    from common.files import atomic_write_bytes
    from common.images import read_image, write_png

    source, target = _require(_INPUT, "-i/--input"), _require(_OUTPUT, "-o/--output")
    image = read_image(source)
    run = _trained_codec()
    variable_rate = hasattr(run.codec, "check_lmbda")  # a hierarchical VAE
    if _LMBDA.value is not None and not variable_rate:
        raise ConfigError(f"--lmbda is for hierarchical VAEs, not {run.codec.name}.")
    encoded = (
        run.codec.compress(image, _LMBDA.value) if variable_rate else run.codec.compress(image)
    )
    pixels = image.shape[0] * image.shape[1]
    if getattr(run.codec, "lossless", False):  # RC: decoded and checked before writing
        if not (run.codec.decode(encoded.data) == image).all():
            raise CodecError(f"{target}: the file does not decode to the image (a bug).")
        atomic_write_bytes(target, encoded.data)
        print(
            f"{target}: {len(encoded.data)} bytes, lossless, "
            f"{8 * len(encoded.data) / (3 * pixels):.4f} bpsp (lossy layer "
            f"{run.codec.layer.quality_name} {encoded.quality:g}: {encoded.bytes_lossy} bytes, "
            f"PSNR {encoded.lossy_psnr:.2f} dB; residual {encoded.bytes_residual} bytes; tau "
            f"{encoded.tau}), encoded in {encoded.seconds:.2f} s with {run.codec.name}."
        )
        return
    atomic_write_bytes(target, encoded.data)
    if _RECONSTRUCTION.value:
        write_png(_RECONSTRUCTION.value, encoded.reconstruction)
    bits = encoded.bits_estimated
    estimate = sum(bits.values() if isinstance(bits, dict) else bits) / pixels
    print(
        f"{target}: {len(encoded.data)} bytes, {8 * len(encoded.data) / pixels:.4f} bpp "
        f"(estimate {estimate:.4f} bpp), PSNR {metrics.psnr(encoded.reconstruction, image):.3f} "
        f"dB, encoded in {encoded.seconds:.2f} s with {run.codec.name} ({run.checkpoint})."
    )


def _target_bytes(pixels: int) -> int | None:
    """The rate-control target in bytes, or None (no --target_bpp / --target_bytes)."""
    bpp, size = _TARGET_BPP.value, _TARGET_BYTES.value
    if bpp is not None and size is not None:
        raise ConfigError("pass --target_bpp or --target_bytes, not both.")
    if bpp is not None:
        if bpp <= 0:
            raise ConfigError(f"--target_bpp must be positive, got {bpp}.")
        return max(1, round(bpp * pixels / 8))
    if size is not None and size <= 0:
        raise ConfigError(f"--target_bytes must be positive, got {size}.")
    return size


def encode() -> None:
    if _LAYERS.value is not None:
        raise ConfigError("--layers is for decode: a file always holds every latent layer.")
    if _WORKDIR.value:
        if _CONFIG.value is not None:
            raise ConfigError("pass --config (per-image codec) or --workdir (trained), not both.")
        if _TARGET_BPP.value is not None or _TARGET_BYTES.value is not None:
            raise ConfigError("--target_bpp / --target_bytes are for C3 (--config).")
        if _MAX_MACS.value is not None:
            raise ConfigError("--max_macs is for C3 (--config).")
        return encode_trained()
    from common import metrics
    from common.files import atomic_write_bytes
    from common.images import read_image, write_png
    from models import registry
    from pipelines.per_image import C3Codec, FitLog

    config = _CONFIG.value
    if config is None:
        raise ConfigError(f"--config is required to encode. {USAGE}")
    if registry.family(config.model.name) == "video":
        return encode_video(config)
    if registry.family(config.model.name) != "per_image":
        raise ConfigError(f"codec.py encode codes per-image models, not {config.model.name!r}.")
    if _MAX_MACS.value is not None:
        if _MAX_MACS.value <= 0:
            raise ConfigError(f"--max_macs must be positive, got {_MAX_MACS.value}.")
        config.arch_search.max_macs = _MAX_MACS.value
    source, target = _require(_INPUT, "-i/--input"), _require(_OUTPUT, "-o/--output")
    image = read_image(source)
    pixels = image.shape[0] * image.shape[1]
    target_bytes = _target_bytes(pixels)
    codec = C3Codec(config, _JIT.value)
    control = None
    if target_bytes is not None:
        from pipelines.rate_control import encode_to_target

        control = encode_to_target(codec, image, target_bytes, what=target)
        encoding = control.encoding
    else:
        encoding = codec.fit_and_encode(image, FitLog("", config.fit), what=target)
    encoded, decoded, fit = encoding.encoded, encoding.decoded, encoding.fit
    atomic_write_bytes(target, encoded.data)
    if _RECONSTRUCTION.value:
        write_png(_RECONSTRUCTION.value, decoded.image)
    estimate = (fit.bits_latents + fit.bits_networks + fit.bits_pixels) / pixels
    if encoded.bits_pixels:  # lossless: encode_and_verify checked the decoded pixels
        quality = f"lossless, {encoded.num_bits / (3 * pixels):.4f} bpsp"
    else:
        quality = f"PSNR {metrics.psnr(decoded.image, image):.3f} dB (decoded)"
    print(
        f"{target}: {len(encoded.data)} bytes, {encoded.num_bits / pixels:.4f} bpp "
        f"(estimate {estimate:.4f} bpp + header {encoded.bits_header // 8} bytes), {quality}, "
        f"fitted in {encoding.fit_seconds:.1f} s, decoded in {decoded.seconds:.2f} s."
    )
    if encoding.architecture is not None:
        chosen = encoding.architecture["candidates"][encoding.architecture["chosen"]]
        print(
            f"architecture: candidate {chosen['index']} of "
            f"{len(encoding.architecture['candidates'])} ({chosen['overrides']}), "
            f"{encoding.macs_per_pixel['total']} MACs per pixel."
        )
    if control is not None:
        tolerance = float(config.fit.rate_control_tolerance)
        verdict = "within" if abs(control.relative_error) <= tolerance else "NOT within"
        print(
            f"rate control: target {control.target_bytes} bytes "
            f"({8 * control.target_bytes / pixels:.4f} bpp), file {control.bytes} bytes "
            f"({100 * control.relative_error:+.2f} %, {verdict} {100 * tolerance:g} %) at "
            f"lambda {control.lmbda:.4g}; {len(control.trials)} fits "
            f"({control.count('fresh')} fresh, {control.count('refine')} refinements), "
            f"{control.iterations} iterations, {control.seconds:.1f} s."
        )


def encode_video(config) -> None:
    """C3 video: fits every patch of the video, writes the file, decodes and measures it."""
    from common import video as video_io
    from common.files import atomic_write_bytes
    from pipelines import video as video_pipeline

    if _TARGET_BPP.value is not None or _TARGET_BYTES.value is not None:
        raise ConfigError("--target_bpp / --target_bytes are not available for video yet.")
    if _MAX_MACS.value is not None:
        raise ConfigError("--max_macs is not available for video (one architecture per config).")
    source, target = _require(_INPUT, "-i/--input"), _require(_OUTPUT, "-o/--output")
    video_pipeline.check_video_input(source)
    video = video_io.read_video(source, int(config.data.max_frames))
    coded = video_pipeline.encode_video(config, video.frames)
    atomic_write_bytes(target, coded.data)
    row, decoded = video_pipeline.video_row(os.path.basename(source), config, video.frames, coded)
    if _RECONSTRUCTION.value:
        video_io.write_video(_RECONSTRUCTION.value, video_io.Video(decoded, video.fps))
    t, h, w = coded.size
    estimate = sum(p["estimated_bits"] for p in coded.patch_rows) / (t * h * w)
    print(
        f"{target}: {len(coded.data)} bytes, {row['bpp']:.4f} bpp (estimate {estimate:.4f}), "
        f"{t} frames of {w}x{h} in {len(coded.patch_rows)} patches of {coded.patch}, PSNR "
        f"{row['psnr']:.3f} dB RGB, {row['psnr_yuv']:.3f} dB YUV 6:1:1 (decoded), fitted in "
        f"{coded.encode_seconds:.1f} s, decoded in {row['decode_seconds']:.2f} s."
    )


def merge(files: list[str]) -> None:
    """Joins the patch files of one C3 video (the Slurm tasks' outputs) into one file."""
    from coding.c3 import video as video_coding
    from common.errors import BitstreamError
    from common.files import atomic_write_bytes

    target = _require(_OUTPUT, "-o/--output")
    if not files:
        raise ConfigError("merge: name the patch files: codec.py merge -o OUT FILE [FILE ...]")
    data = []
    for path in files:
        if not os.path.isfile(path):
            raise BitstreamError(f"{path}: no such file.")
        with open(path, "rb") as f:
            data.append(f.read())
    merged = video_coding.merge(data)
    video = video_coding.VideoFile.parse(merged, target)
    atomic_write_bytes(target, merged)
    state = "complete" if video.complete else "still incomplete"
    print(f"{target}: {len(video.sections)} of {video.num_patches} patches ({state}).")


def decode_video(data: bytes, source: str, target: str) -> None:
    from coding.c3 import video as video_coding
    from common import video as video_io

    start = time.perf_counter()
    frames = video_coding.decode(data, jit=_JIT.value, what=source)
    seconds = time.perf_counter() - start
    video_io.write_video(target, video_io.Video(frames))
    t, h, w = frames.shape[:3]
    print(
        f"{target}: {t} frames of {w}x{h}, {8 * len(data) / (t * h * w):.4f} bpp, decoded in "
        f"{seconds:.3f} s ({seconds / t:.3f} s per frame)."
    )


def decode() -> None:
    from coding import container
    from coding.c3 import codec as c3_codec
    from common.errors import BitstreamError
    from common.images import write_png

    if _LMBDA.value is not None:
        raise ConfigError("--lmbda is for encode: a file carries the lambda it was coded at.")
    if _TARGET_BPP.value is not None or _TARGET_BYTES.value is not None:
        raise ConfigError("--target_bpp / --target_bytes are for encode.")

    source, target = _require(_INPUT, "-i/--input"), _require(_OUTPUT, "-o/--output")
    if not os.path.isfile(source):
        raise BitstreamError(f"{source}: no such file.")
    with open(source, "rb") as f:
        data = f.read()
    codec_name = container.parse(data, source).codec
    if codec_name == "c3_video":
        return decode_video(data, source, target)
    if codec_name not in ("c3", "c3_lossless"):
        if not _WORKDIR.value:
            raise ConfigError(
                f"{source} is a {codec_name} file: pass --workdir RUN, "
                "the run directory of the model that encoded it."
            )
        codec = _trained_codec().codec
        if _LAYERS.value is not None:
            if not hasattr(codec, "num_layers"):
                raise ConfigError(f"--layers is for hierarchical VAEs, not {codec.name}.")
            decoded = codec.decompress(data, source, layers=_LAYERS.value)
        else:
            decoded = codec.decompress(data, source)
        write_png(target, decoded.image)
        h, w = decoded.image.shape[:2]
        layers = ""
        if hasattr(codec, "num_layers") and decoded.layers < codec.num_layers:
            layers = (
                f" ({decoded.layers} of {codec.num_layers} latent layers: "
                f"{8 * decoded.prefix_bytes / (h * w):.4f} bpp of the prefix)"
            )
        print(
            f"{target}: {w}x{h}, {8 * len(data) / (h * w):.4f} bpp{layers}, decoded in "
            f"{decoded.seconds:.3f} s."
        )
        return
    decoded = c3_codec.decode(data, jit=_JIT.value, what=source)
    write_png(target, decoded.image)
    h, w = decoded.image.shape[:2]
    print(
        f"{target}: {w}x{h}, {8 * len(data) / (h * w):.4f} bpp, decoded in "
        f"{decoded.seconds:.3f} s (networks {decoded.seconds_networks:.3f}, latents "
        f"{decoded.seconds_latents:.3f}, synthesis {decoded.seconds_synthesis:.3f})."
    )


def main(argv):
    commands = {"encode": encode, "decode": decode}
    if len(argv) >= 2 and argv[1] == "merge":
        return merge(argv[2:])
    if len(argv) != 2 or argv[1] not in commands:
        raise ConfigError(f"expected one command, encode or decode (or merge). {USAGE}")
    commands[argv[1]]()


if __name__ == "__main__":
    run_main(main, "codec.py")
