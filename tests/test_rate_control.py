"""Rate control (pipelines/rate_control.py) lands a file within 2 % of a target size, and
the per-image architecture choice (pipelines/architecture.py) respects --max_macs."""

import math

import numpy as np
import pytest

from common.errors import ConfigError
from configs import c3_quickstart
from pipelines.architecture import candidate_model_config
from pipelines.per_image import C3Codec
from pipelines.rate_control import encode_to_target, next_lambda
from tests.helpers import run_in_process

SIZE = 64


def textured_image() -> np.ndarray:
    """64x64 with texture and noise, so that the latents carry most of the file."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    texture = 0.5 + 0.25 * np.sin(9 * xx + 4 * yy)[..., None]
    texture = texture + 0.1 * rng.normal(size=(SIZE, SIZE, 3))
    image = 0.2 + 0.6 * np.clip(texture + 0.3 * xx[..., None], 0, 1)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def small_config():
    config = c3_quickstart.get_config()
    config.model.synthesis_hidden, config.model.arm_hidden = (8, 8), (8, 8)
    config.model.num_grids = 5
    config.fit.num_noise_steps, config.fit.max_ste_steps, config.fit.log_every = 80, 10, 40
    config.fit.weight_steps = config.fit.bias_steps = (2.0**-7, 2.0**-6, 2.0**-5)
    config.fit.rate_control_refine_fraction = 0.5
    return config


def test_next_lambda_interpolates_and_never_repeats():
    # Bytes halve per decade of lambda: the secant between the two files around 500 B.
    points = [(1e-3, 1000), (1e-2, 500), (1e-1, 250)]
    assert next_lambda(points, 707) == pytest.approx(10**-2.5, rel=0.02)
    # Beyond the points: extrapolated along the nearest slope, at most 8x per step.
    assert next_lambda(points, 10) == pytest.approx(0.8)
    # A secant that would repeat a tried lambda falls back to the geometric mean.
    assert next_lambda([(1e-3, 600), (4e-3, 400)], 520) == pytest.approx(
        1e-3 * 4 ** (math.log(600 / 520) / math.log(600 / 400)), rel=1e-6
    )
    assert next_lambda([(1e-3, 600), (1e-3 * 1.0001, 400)], 500) is None


def test_rate_control_lands_within_two_percent():
    image = textured_image()
    target = 850  # inside what the bracket's lambdas give (about 460 to 1020 bytes)
    result = encode_to_target(C3Codec(small_config()), image, target)
    assert abs(result.relative_error) <= 0.02, [t.to_dict() for t in result.trials]
    assert result.bytes == len(result.encoding.encoded.data)
    bracket = [t for t in result.trials if t.kind == "bracket"]
    assert [t.lmbda for t in bracket] == [1e-4, 6e-4, 3.5e-3, 2e-2]
    assert bracket[0].bytes > bracket[-1].bytes  # lambda steers the size
    assert result.iterations >= sum(t.iterations for t in bracket)
    # Unless a bracket file is already there, the next fit is a whole one from scratch at
    # a lambda between those of the bracket files around the target; refinements come
    # only after the fresh fits.
    kinds = [t.kind for t in result.trials]
    assert kinds == sorted(kinds, key=["bracket", "fresh", "refine"].index)
    if not any(abs(t.bytes / target - 1.0) <= 0.02 for t in bracket):
        fresh = result.trials[len(bracket)]
        assert fresh.kind == "fresh" and fresh.iterations == bracket[0].iterations
        above = max(t.lmbda for t in bracket if t.bytes >= target)
        below = min(t.lmbda for t in bracket if t.bytes < target)
        assert above < fresh.lmbda < below
    # The kept file decodes to the image it reports.
    from coding.c3 import codec as c3_codec

    decoded = c3_codec.decode(result.encoding.encoded.data)
    assert np.array_equal(decoded.image, result.encoding.decoded.image)


def test_architecture_choice_respects_max_macs(tmp_path):
    config = small_config()
    config.fit.num_noise_steps, config.fit.max_ste_steps = 40, 0
    config.arch_search.candidates = (
        {"synthesis_hidden": (8, 8), "arm_hidden": (8, 8)},
        {"synthesis_hidden": (16, 16), "arm_hidden": (16, 16)},
        {"synthesis_hidden": (32, 32), "arm_hidden": (32, 32)},
    )
    config.arch_search.steps = 20
    from models import registry

    macs = [
        registry.build_model(
            candidate_model_config(config, c), height=SIZE, width=SIZE
        ).macs_per_pixel()["total"]
        for c in config.arch_search.candidates
    ]
    assert macs[0] < macs[1] < macs[2]
    config.arch_search.max_macs = macs[1]
    encoding = C3Codec(config).fit_and_encode(textured_image())
    record = encoding.architecture
    assert encoding.macs_per_pixel["total"] <= macs[1]
    assert record["candidates"][2]["excluded"].startswith("above max_macs")
    assert all("brief_rd_loss" in record["candidates"][k] for k in (0, 1))
    chosen = record["chosen"]
    assert record["candidates"][chosen]["brief_rd_loss"] == min(
        record["candidates"][k]["brief_rd_loss"] for k in (0, 1)
    )
    # The other candidate's steps count as iterations of this encoding.
    assert encoding.fit.iterations == 40 + 20
    config.arch_search.max_macs = macs[0] - 1
    with pytest.raises(ConfigError, match="max_macs"):
        C3Codec(config).fit_and_encode(textured_image())


def test_codec_cli_rate_control_and_max_macs_errors(tmp_path):
    from common.images import write_png

    source = str(tmp_path / "in.png")
    write_png(source, textured_image())
    base = ["encode", "-i", source, "-o", str(tmp_path / "out.c3")]
    config = "--config=configs/c3_quickstart.py"
    cases = [
        ([*base, config, "--target_bpp", "1", "--target_bytes", "10"], "not both"),
        ([*base, config, "--target_bpp", "-1"], "--target_bpp must be positive"),
        ([*base, config, "--max_macs", "100"], "above --max_macs 100"),
        (
            [*base, config, "--target_bpp", "1", "--config.fit.rate_control_fresh_fits=-1"],
            "fit.rate_control_fresh_fits >= 0",
        ),
        (["decode", "-i", source, "-o", str(tmp_path / "x.png"), "--target_bpp", "1"], "encode"),
    ]
    for argv, message in cases:
        result = run_in_process("codec.py", *argv)
        assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.c3").exists()
