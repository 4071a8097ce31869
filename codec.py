"""Encode an image to a C3 / COOL-CHIC bitstream, or decode a bitstream to a PNG.

python codec.py encode -i img.png -o img.c3 --config configs/c3_kodak.py
                [--config.model.lmbda=1e-3] [--config.fit.num_noise_steps=...]
                [--reconstruction decoded.png]
python codec.py decode -i img.c3 -o out.png [--nojit]

Encoding fits the model to the image (that is C3's encoder), writes the file and decodes
it before reporting the measured bpp and the PSNR of the decoded image. Decoding needs
only the file.
"""

import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from common.config import ConfigError, check_config_path, parse_flags, quiet_tensorflow
from common.images import ImageError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
_INPUT = flags.DEFINE_string("input", None, "Input image (encode) or bitstream (decode).")
_OUTPUT = flags.DEFINE_string("output", None, "Output bitstream (encode) or PNG (decode).")
_RECONSTRUCTION = flags.DEFINE_string(
    "reconstruction", None, "encode: also write the decoded image as this PNG."
)
_JIT = flags.DEFINE_bool("jit", True, "Run the fixed-point networks through XLA (same output).")
flags.DEFINE_alias("i", "input")
flags.DEFINE_alias("o", "output")

USAGE = "usage: codec.py encode|decode -i INPUT -o OUTPUT [--config CONFIG]"


class CodecError(Exception):
    """A user mistake: reported as one line, exit code 2."""


def _require(flag, what: str):
    if not flag.value:
        raise CodecError(f"{what} is required. {USAGE}")
    return flag.value


def encode() -> None:
    from coding import c3_experiment
    from common import metrics
    from common.files import atomic_write_bytes
    from common.images import read_image, to_float, write_png
    from models.c3.fit import C3Fitter
    from models.registry import PER_IMAGE_MODELS, build_per_image_model

    config = _CONFIG.value
    if config is None:
        raise CodecError(f"--config is required to encode. {USAGE}")
    if config.model.name not in PER_IMAGE_MODELS:
        raise CodecError(f"codec.py encode codes per-image models, not {config.model.name!r}.")
    source, target = _require(_INPUT, "-i/--input"), _require(_OUTPUT, "-o/--output")
    image = read_image(source)
    height, width = image.shape[:2]
    model = build_per_image_model(config.model, height, width)
    fitter = C3Fitter(model, config.fit)
    fitter.reset(to_float(image), float(config.model.lmbda), config.seed)

    def log_fn(stage, step, values):
        logging.info(
            "%s step %d: loss %.6g, PSNR %.3f dB, latents %.4f bpp",
            stage,
            step,
            values["loss"],
            values["psnr"],
            values["bpp_latents"],
        )

    start = time.perf_counter()
    fit = fitter.fit(log_fn)
    fit_seconds = time.perf_counter() - start
    encoded, decoded = c3_experiment.encode_and_verify(fitter, fit, target)
    atomic_write_bytes(target, encoded.data)
    if _RECONSTRUCTION.value:
        write_png(_RECONSTRUCTION.value, decoded.image)
    pixels = height * width
    print(
        f"{target}: {len(encoded.data)} bytes, {encoded.num_bits / pixels:.4f} bpp "
        f"(estimate {(fit.bits_latents + fit.bits_networks) / pixels:.4f} bpp + header "
        f"{encoded.bits_header // 8} bytes), PSNR {metrics.psnr(decoded.image, image):.3f} dB "
        f"(decoded), fitted in {fit_seconds:.1f} s, decoded in {decoded.seconds:.2f} s."
    )


def decode() -> None:
    from coding import c3_codec
    from common.images import write_png

    source, target = _require(_INPUT, "-i/--input"), _require(_OUTPUT, "-o/--output")
    if not os.path.isfile(source):
        raise CodecError(f"{source}: no such file.")
    with open(source, "rb") as f:
        data = f.read()
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
    if len(argv) != 2 or argv[1] not in commands:
        raise CodecError(f"expected one command, encode or decode. {USAGE}")
    commands[argv[1]]()


def run() -> None:
    quiet_tensorflow()
    from coding.container import BitstreamError
    from models.c3.fit import FitError

    try:
        check_config_path(sys.argv)
        app.run(main, flags_parser=parse_flags)
    except (CodecError, ConfigError, ImageError, BitstreamError) as e:
        print(f"codec.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except FitError as e:
        print(f"codec.py: error: fit failed: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
