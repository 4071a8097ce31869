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


def test_escaped_values_decode_in_a_script_as_here(tmp_path):
    """Values outside their coding rows (escapes, both signs, both sections) decode in a
    script exactly as in this process. Scripts import TensorFlow inside absl's app.run;
    until `common.cli.run_main` imported it first, TF 2.14 then traced every tf.function
    in graph mode and the decoder read each positive escape with the wrong sign."""
    import numpy as np

    from coding.c3 import codec as c3_codec

    golden = c3_codec.decode(open(GOLDEN, "rb").read())
    integers = [q.copy() for q in golden.integers]
    integers[0].flat[0], integers[0].flat[1] = 261, -261
    symbols = [s.copy() for s in golden.symbols]
    symbols[0][0, 0], symbols[0][1, 2], symbols[-1][0, 0] = 200, -150, 300
    data = c3_codec.write(golden.arch, integers, symbols).data
    here = c3_codec.decode(data)
    assert all(np.array_equal(a, b) for a, b in zip(here.symbols, symbols, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(here.integers, integers, strict=True))
    (tmp_path / "escapes.c3").write_bytes(data)
    out = run_script(
        "codec.py", "decode", "-i", str(tmp_path / "escapes.c3"), "-o", str(tmp_path / "d.png")
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), here.image)


def test_a_broken_eager_context_is_detected():
    """The check `run_main` makes catches TensorFlow imported first inside app.run."""
    script = (
        "from absl import app\n"
        "def main(argv):\n"
        "    import tensorflow\n"
        "    from common.cli import check_eager_context\n"
        "    check_eager_context()\n"
        "app.run(main)\n"
    )
    out = run_script("-c", script)
    assert out.returncode != 0 and "import tensorflow before app.run" in out.stderr


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
