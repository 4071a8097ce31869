"""codec.py and eval.py as a user runs them: one end-to-end test in a subprocess, the rest
in this process (`run_in_process`: same flags, outputs and exit codes)."""

import json
import os

import pytest
from PIL import Image

from tests.helpers import GOLDEN, GOLDEN_PNG_SHA256, run_in_process, run_script, smooth_image

run = run_in_process


def sha256(path) -> str:
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_encode_then_decode(tmp_path):
    Image.fromarray(smooth_image(16, 24, seed=5)).save(tmp_path / "in.png")
    out = run_script(
        "codec.py",
        "encode",
        "-i",
        str(tmp_path / "in.png"),
        "-o",
        str(tmp_path / "in.c3"),
        "--config",
        "configs/coolchic.py",
        "--config.fit.num_noise_steps=20",
        "--config.fit.max_ste_steps=2",
        "--config.fit.log_every=10",
        "--config.fit.weight_steps=(0.0078125,)",
        "--config.fit.bias_steps=(0.0078125,)",
        f"--reconstruction={tmp_path / 'encoder.png'}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bpp" in out.stdout and "(decoded)" in out.stdout
    out = run_script(
        "codec.py", "decode", "-i", str(tmp_path / "in.c3"), "-o", str(tmp_path / "d.png")
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert sha256(tmp_path / "d.png") == sha256(tmp_path / "encoder.png")


def test_decode_golden_and_eval(tmp_path):
    out = run("codec.py", "decode", "-i", GOLDEN, "-o", str(tmp_path / "g.png"), "--nojit")
    assert out.returncode == 0, out.stderr[-3000:]
    assert sha256(tmp_path / "g.png") == GOLDEN_PNG_SHA256
    originals = tmp_path / "originals"
    originals.mkdir()
    name = os.path.splitext(os.path.basename(GOLDEN))[0]
    Image.fromarray(smooth_image(32, 48, seed=7)).save(originals / f"{name}.png")
    out = run(
        "eval.py", f"--bitstreams={GOLDEN}", f"--originals={originals}", f"--out={tmp_path}/ev"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    row = json.loads((tmp_path / "ev" / "results" / f"{name}.json").read_text())
    assert row["bpp"] == pytest.approx(8 * os.path.getsize(GOLDEN) / (32 * 48))
    assert 20 < row["psnr"] < 40 and row["decode_seconds"] > 0
    summary = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert summary["results"]["bpp"] == [row["bpp"]]
    assert summary["results"]["psnr-rgb"] == [row["psnr"]]


@pytest.mark.parametrize("damage", ["truncate", "empty", "png"])
def test_bad_bitstream_is_one_line_and_no_output(tmp_path, damage):
    data = open(GOLDEN, "rb").read()
    bad = {"truncate": data[:40], "empty": b"", "png": b"\x89PNG\r\n\x1a\n" + data}[damage]
    (tmp_path / "bad.c3").write_bytes(bad)
    out = run("codec.py", "decode", "-i", str(tmp_path / "bad.c3"), "-o", str(tmp_path / "o.png"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codec.py: error:"), out.stderr
    assert not (tmp_path / "o.png").exists()
    originals = tmp_path / "originals"
    originals.mkdir()
    Image.fromarray(smooth_image(32, 48, seed=7)).save(originals / "bad.png")
    out = run(
        "eval.py",
        f"--bitstreams={tmp_path / 'bad.c3'}",
        f"--originals={originals}",
        f"--out={tmp_path / 'ev'}",
    )
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("eval.py: error")
    assert "Traceback" not in out.stderr


def test_usage_errors(tmp_path):
    out = run("codec.py", "decode", "-i", str(tmp_path / "missing.c3"), "-o", "x.png")
    assert out.returncode == 2 and "no such file" in out.stderr
    out = run("codec.py", "transcode")
    assert out.returncode == 2 and "encode or decode" in out.stderr
    out = run("eval.py", "--bitstreams=/nonexistent/*.c3", "--originals=/tmp", "--out=/tmp/x")
    assert out.returncode == 2 and "no bitstreams match" in out.stderr
