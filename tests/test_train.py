"""train.py as a user runs it: end to end in a subprocess, bad input in this process."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_in_process, run_script, smooth_image

TINY = [
    "--config.fit.num_noise_steps=30",
    "--config.fit.max_ste_steps=5",
    "--config.fit.log_every=10",
    "--config.fit.jit_compile=False",
    "--config.fit.weight_steps=(0.0009765625, 0.0078125)",
    "--config.fit.bias_steps=(0.0009765625, 0.0078125)",
]


def run_train(*args):
    return run_in_process("train.py", *args)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(smooth_image(32, 48, seed=1)).save(folder / "a.png")
    Image.fromarray(smooth_image(33, 47, seed=2)).convert("L").save(folder / "b_gray.png")
    return folder


def test_train_end_to_end_on_a_tiny_folder(image_folder, tmp_path):
    workdir = tmp_path / "run"
    args = ["--config", "configs/c3_kodak.py", "--hid", "15", "--config.data.name=folder"]
    args += [f"--config.data.root={image_folder}", f"--workdir={workdir}", *TINY]
    out = run_script("train.py", *args, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("Running on CPU") + out.stderr.count("Running on GPU") == 1
    # hid 15 = image 1 (b_gray, odd size, converted to RGB) at the second lambda.
    row = json.loads((workdir / "results" / "b_gray.json").read_text())
    assert row["lmbda"] == 2e-4 and row["height"] == 33 and row["width"] == 47
    assert row["bpp_estimated"] == pytest.approx(row["bpp_latents"] + row["bpp_networks"])
    assert row["steps"] >= 30 and row["macs_per_pixel"] > 0 and row["psnr"] > 10
    # The measured rate is the file's size; the reported image is the decoded file.
    bitstream = workdir / row["bitstream"]
    assert row["bpp"] == pytest.approx(8 * bitstream.stat().st_size / (33 * 47))
    assert row["bpp"] <= 1.01 * row["bpp_estimated"] + row["bpp_header"]
    recon = np.asarray(Image.open(workdir / "reconstructions" / "b_gray.png"))
    assert recon.shape == (33, 47, 3)
    # eval.py decodes the run's files and measures them the same way.
    out = run_in_process("eval.py", f"--workdir={workdir}")
    assert out.returncode == 0, out.stderr[-3000:]
    evaluated = json.loads((workdir / "eval" / "results" / "b_gray.json").read_text())
    assert evaluated["bpp"] == pytest.approx(row["bpp"])
    assert evaluated["psnr"] == pytest.approx(row["psnr"])
    assert evaluated["lmbda"] == row["lmbda"] and evaluated["decode_seconds"] > 0
    assert (workdir / "config.json").exists() and (workdir / "run_info.json").exists()
    assert any((workdir / "tensorboard" / "b_gray").iterdir())
    assert any((workdir / "checkpoints" / "b_gray").iterdir())
    summary = json.loads((workdir / "results.json").read_text())
    assert summary["results"]["lmbda"] == [2e-4]
    # A finished work unit is skipped on rerun.
    again = run_train(*args)
    assert again.returncode == 0 and "already finished" in again.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.data.name=folder", "--config.data.root=/nonexistent/dir"], "not a folder"),
        (["--hid", "9999"], "out of range"),
        (["--config", "configs/no_such_config.py"], "does not exist"),
        (["--config.fit.no_such_field=1"], "has no field 'fit.no_such_field'; did you mean"),
        (["--config.fit.num_noise_stepz=1"], "did you mean fit.num_noise_steps"),
        (["--config.fit.num_noise_steps=abc"], "fit.num_noise_steps is an integer"),
        (["--config.fit.learning_rate=fast"], "fit.learning_rate is a number (default 0.01)"),
        (
            [
                "--config.data.name=kodak",
                "--config.data.kodak_url=http://127.0.0.1:9",
                "--config.data.root={tmp}/cache",
            ],
            "lacks 24 of the 24 Kodak PNGs (kodim01.png, kodim02.png, kodim03.png, kodim04.png "
            "and 20 more) and downloading",
        ),
    ],
)
def test_bad_input_gives_one_clear_line(args, message, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = run_train("--config", "configs/c3_kodak.py", f"--workdir={tmp_path}/w", *args, *TINY)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:") and message in last, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_kodak_checksum_mismatch_is_refused(tmp_path):
    cache = tmp_path / "kodak"
    cache.mkdir()
    Image.fromarray(smooth_image()).save(cache / "kodim01.png")
    out = run_train(
        "--config",
        "configs/c3_kodak.py",
        f"--config.data.root={cache}",
        f"--workdir={tmp_path}/w",
        *TINY,
    )
    assert out.returncode != 0 and "checksum mismatch" in out.stderr.strip().splitlines()[-1]


def test_empty_folder_and_transparent_image(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_train(
        "--config",
        "configs/c3_kodak.py",
        "--config.data.name=folder",
        f"--config.data.root={empty}",
        f"--workdir={tmp_path}/w",
        *TINY,
    )
    assert out.returncode != 0 and "no images (.png" in out.stderr.strip().splitlines()[-1]
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[..., 3] = 0
    Image.fromarray(rgba, "RGBA").save(empty / "t.png")
    out = run_train(
        "--config",
        "configs/c3_kodak.py",
        "--config.data.name=folder",
        f"--config.data.root={empty}",
        f"--workdir={tmp_path}/w2",
        *TINY,
    )
    assert out.returncode != 0 and "transparency" in out.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "w2" / "results").exists()


@pytest.mark.parametrize("script", ["train.py", "itinf.py"])
def test_help_lists_the_run_flags_and_exits_0(script):
    out = run_in_process(script, "--help")
    assert out.returncode == 0, out.stderr
    for flag in ("--config", "--hid", "--workdir", "--root", "--[no]print_config"):
        assert flag in out.stdout, out.stdout


def test_print_config_shows_the_resolved_config_and_writes_nothing(tmp_path):
    out = run_in_process(
        "train.py", "--config", "configs/c3_kodak.py", "--hid", "15",
        "--config.fit.num_noise_steps=7", f"--workdir={tmp_path / 'w'}", "--print_config",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "lmbda: 0.0002" in out.stdout and "index: 1" in out.stdout  # sweep entry 15
    assert "num_noise_steps: 7" in out.stdout  # the override
    assert not (tmp_path / "w").exists()
