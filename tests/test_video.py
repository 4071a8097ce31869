"""C3 video: the 3-D context model's causality, the 3-D wavefront coder, patches and files,
bit-exact decoding in other processes, video input and its errors."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from coding.c3 import video as video_coding
from common import video as video_io
from common.errors import BitstreamError, ImageError
from tests.helpers import ROOT, run_in_process, run_script

STEPS = (2.0**-7, 2.0**-8)


def made_video(frames=5, height=18, width=26, seed=0) -> np.ndarray:
    """Moving smooth patterns plus a little noise, uint8 (T, H, W, 3); odd sizes."""
    rng = np.random.default_rng(seed)
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    video = np.stack(
        [
            0.5 + 0.35 * np.sin((x - 1.5 * t) / 4.0),
            0.5 + 0.3 * np.cos((y + t) / 5.0),
            (x + y + 2 * t) / (height + width + 2 * frames),
        ],
        axis=-1,
    )
    video = video * 255 + rng.normal(0, 2, video.shape)
    return np.clip(np.round(video), 0, 255).astype(np.uint8)


def small_config(**fit):
    from configs import c3_video_small

    config = c3_video_small.get_config()
    config.fit.num_noise_steps = fit.get("noise", 80)
    config.fit.max_ste_steps = fit.get("ste", 10)
    config.fit.log_every = 20
    config.fit.stall_check_steps = 0
    return config


def random_video_model(size=(5, 18, 26), seed=0, **model):
    """A C3 video model with random networks and latents, networks quantised (no fit)."""
    from models import registry

    config = small_config().model
    for key, value in model.items():
        config[key] = value
    m = registry.build_model(config, frames=size[0], height=size[1], width=size[2])
    rng = np.random.default_rng(seed)
    for v in m.network_variables:
        v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))
    for v in m.latent_grids.grid_parameters:
        v.assign(rng.normal(0, 1.5, v.shape).astype(np.float32))
    m.set_network_integers(m.network_integers(*STEPS), *STEPS)
    return m


def test_context_model_is_causal_in_time_and_space():
    """Changing one latent changes no prediction of a latent decoded before it: earlier
    frames, earlier positions of its frame, itself; and it does reach the next frame."""
    model = random_video_model()
    context = model.context_model
    grid = tf.constant(np.random.default_rng(1).normal(size=(4, 6, 7)), tf.float32)
    t0, y0, x0 = 2, 3, 4

    def params(g):
        loc, scale = context([g])
        return loc.numpy().reshape(4, 6, 7), scale.numpy().reshape(4, 6, 7)

    before = params(grid)
    changed = params(tf.tensor_scatter_nd_add(grid, [[t0, y0, x0]], [5.0]))
    moved = np.abs(before[0] - changed[0]) + np.abs(before[1] - changed[1]) > 0
    t, y, x = np.meshgrid(range(4), range(6), range(7), indexing="ij")
    earlier = (t < t0) | ((t == t0) & ((y < y0) | ((y == y0) & (x <= x0))))
    assert not moved[earlier].any()
    assert moved[t0, y0, x0 + 1] and moved[t0 + 1, y0, x0]  # its successors see it
    assert not moved[t0 + 1, y0, 0]  # outside the previous-frame window


def test_wavefront_order_reads_only_decoded_latents():
    """Every context a latent reads (its frame's causal window, the previous frame's
    window) is decoded in an earlier wavefront, or is a zero border."""
    model = random_video_model(size=(6, 10, 12))
    arch = video_coding.VideoArchitecture.from_model(model, *STEPS)
    coder = video_coding.VideoLatentCoder(arch)
    schedule, canvas = coder.schedule, coder.canvas
    wave = np.full(canvas.size, -1)
    wave[schedule.order] = schedule.wave_of_order
    positions = schedule.order
    shift = coder._frame_shift[positions // canvas.stride]
    reads = np.concatenate(
        [positions[:, None] + coder.offsets, (positions + shift)[:, None] + coder.prev_offsets],
        axis=1,
    )
    read_waves = wave[reads]
    own = schedule.wave_of_order[:, None]
    assert np.all((read_waves == -1) | (read_waves < own))
    # Not one wavefront per latent: frames overlap in time.
    finest = sum(s[0] * s[1] for s in coder.shapes[1:7])
    assert schedule.num_wavefronts < finest / 2


def test_patch_round_trip_and_float_model_agree():
    """A patch's latents decode exactly; the decoded frames follow the float model's (at
    sizes whose grid ratios are powers of two, where the fixed-point taps are exact)."""
    model = random_video_model(size=(4, 16, 24))
    encoded = video_coding.encode_patch(model, *STEPS)
    for jit in (True, False):
        decoded = video_coding.decode_patch(encoded.payload, jit)
        assert decoded.shape == (4, 16, 24, 3)
        if jit:
            first = decoded
        else:
            np.testing.assert_array_equal(decoded, first)
    arch = video_coding.VideoArchitecture.from_model(model, *STEPS)
    reader_symbols = model.symbols()
    parameters = video_coding.prepare_parameters(arch.frame, model.network_integers(*STEPS))
    string = video_coding.VideoLatentCoder(arch).encode_grids(reader_symbols, parameters)
    grids, ok = video_coding.VideoLatentCoder(arch).decode_grids(string, parameters)
    assert ok
    for a, b in zip(grids, reader_symbols, strict=True):
        np.testing.assert_array_equal(a, b)
    out = model(tf.zeros(model.target_shape), "round")["reconstruction"].numpy()
    float_pixels = np.round(np.clip(out, 0, 1) * 255)
    assert np.abs(float_pixels - first).max() <= 2
    assert np.mean(float_pixels != first) < 0.1


def test_patches_split_merge_and_refuse_incomplete():
    covered = np.zeros((7, 19, 30), int)
    for t0, t1, y0, y1, x0, x1 in video_coding.patch_boxes((7, 19, 30), (4, 16, 16)):
        covered[t0:t1, y0:y1, x0:x1] += 1
    assert np.all(covered == 1) and covered.size == 7 * 19 * 30
    size, patch = (7, 19, 14), (4, 16, 14)
    boxes = video_coding.patch_boxes(size, patch)
    assert len(boxes) == 4
    sections = {}
    for index, (t0, t1, y0, y1, x0, x1) in enumerate(boxes):
        model = random_video_model(size=(t1 - t0, y1 - y0, x1 - x0), seed=index)
        sections[index] = video_coding.encode_patch(model, *STEPS).payload
    whole = video_coding.VideoFile(size, patch, sections).to_bytes()
    halves = [
        video_coding.VideoFile(size, patch, {i: s for i, s in sections.items() if i % 2 == r})
        for r in (0, 1)
    ]
    merged = video_coding.merge([h.to_bytes() for h in halves])
    assert merged == whole
    frames = video_coding.decode(merged)
    assert frames.shape == (*size, 3)
    t0, t1, y0, y1, x0, x1 = boxes[3]
    np.testing.assert_array_equal(
        frames[t0:t1, y0:y1, x0:x1], video_coding.decode_patch(sections[3])
    )
    with pytest.raises(BitstreamError, match="2 of 4 patches missing.*merge"):
        video_coding.decode(halves[0].to_bytes())
    other = video_coding.VideoFile((7, 19, 15), patch, {0: sections[0]}).to_bytes()
    with pytest.raises(BitstreamError, match="different videos"):
        video_coding.merge([whole, other])
    swapped = {0: sections[1], 1: sections[0], 2: sections[2], 3: sections[3]}
    wrong = video_coding.VideoFile(size, patch, swapped).to_bytes()
    with pytest.raises(BitstreamError, match="geometry"):
        video_coding.decode(wrong)
    absurd = video_coding.VideoFile((65535,) * 3, (1, 1, 1), {0: b"x"}).to_bytes()
    with pytest.raises(BitstreamError, match="at most 65535"):
        video_coding.decode(absurd)
    # A Y'CbCr file: the same patches, converted to RGB after decoding.
    yuv = video_coding.VideoFile(size, patch, sections, "yuv").to_bytes()
    np.testing.assert_array_equal(video_coding.decode(yuv), video_io.yuv_to_rgb(frames))
    # More patches than container sections (UVG's 1080p sweep: up to 960 per lambda).
    many = {i: bytes([i % 256]) * (i % 7) for i in range(600)}
    file = video_coding.VideoFile((60, 90, 600), (6, 9, 6), many)
    assert video_coding.VideoFile.parse(file.to_bytes()).sections == many
    damaged = bytearray(whole)
    damaged[-10] ^= 0xFF
    with pytest.raises(BitstreamError):
        video_coding.decode(bytes(damaged))


def test_uvg_config_under_5k_macs_per_pixel():
    """C3's UVG claim: under 5k MACs per pixel, counted as C3 does, at each patch size."""
    from configs import c3_video
    from models import registry

    config = c3_video.get_config()
    for _, *size in c3_video.PATCH_BY_LAMBDA:
        model = registry.build_model(config.model, frames=size[0], height=size[1], width=size[2])
        macs = model.macs_per_pixel()
        assert macs["total"] < 5000, macs
        # By hand: synthesis 5 -> 32 -> 32 -> 3 and two 3x3 convs on 3 channels; 16 per
        # upsampled grid; the context model's 12 + 25 inputs -> 16 -> 16 -> 2 per latent.
        assert macs["synthesis"] == 5 * 32 + 32 * 32 + 32 * 3 + 2 * 9 * 9
        assert macs["upsampling"] == 16 * 4
        assert (37 * 16 + 16 * 16 + 16 * 2) < macs["context_model"] < 1.2 * 880
    assert [c3_video.patch_size(lmbda) for lmbda in c3_video.LAMBDAS] == [
        (30, 180, 240), (60, 180, 240), (60, 180, 240), (60, 180, 240),
        (75, 270, 320), (75, 270, 320),
    ]  # fmt: skip
    sweep = c3_video.patch_lambda_sweep(600, 1080, 1920)
    assert {"model.lmbda": 1e-4, "video.patches": "0"} in sweep
    assert sum(e["model.lmbda"] == 5e-3 for e in sweep) == 8 * 4 * 6


def test_video_input_formats_and_errors(tmp_path):
    video = made_video(4, 9, 11)
    y4m = tmp_path / "v.y4m"
    video_io.write_video(str(y4m), video_io.Video(video))
    back = video_io.read_video(str(y4m))
    assert back.shape == (4, 9, 11) and np.abs(back.frames.astype(int) - video).max() <= 3
    folder = tmp_path / "frames"
    video_io.write_video(str(folder), video_io.Video(video))
    np.testing.assert_array_equal(video_io.read_video(str(folder)).frames, video)
    # 4:2:0 with odd sizes
    data = video_io.y4m_bytes(video_io.Video(video), "420jpeg")
    (tmp_path / "c420.y4m").write_bytes(data)
    assert video_io.read_video(str(tmp_path / "c420.y4m")).shape == (4, 9, 11)
    (tmp_path / "cut.y4m").write_bytes(data[:-7])
    with pytest.raises(ImageError, match="frame 3 is truncated"):
        video_io.read_video(str(tmp_path / "cut.y4m"))
    (tmp_path / "p10.y4m").write_bytes(b"YUV4MPEG2 W8 H8 F25:1 C420p10\nFRAME\n" + bytes(200))
    with pytest.raises(ImageError, match="C420p10 is not supported"):
        video_io.read_video(str(tmp_path / "p10.y4m"))
    os.remove(folder / "frame_000003.png")
    with pytest.raises(ImageError, match="frame 3 is missing"):
        video_io.read_video(str(folder))
    with pytest.raises(ImageError, match="no such file"):
        video_io.read_video(str(tmp_path / "nothing.y4m"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    if shutil.which("ffmpeg"):
        with pytest.raises(ImageError, match="ffmpeg cannot decode"):
            video_io.read_video(str(tmp_path / "junk.mp4"))


def test_psnr_conventions():
    """RGB: the mean of the frames' PSNRs; YUV: (6 Y + Cb + Cr) / 8 per frame, averaged."""
    a = made_video(3, 8, 10)
    b = np.clip(a.astype(int) + np.array([1, 2, 3])[:, None, None, None], 0, 255).astype(np.uint8)
    errors = [np.mean((x.astype(float) - y) ** 2) for x, y in zip(a, b, strict=True)]
    per_frame = [10 * np.log10(255**2 / e) for e in errors]
    assert video_io.psnr_rgb(a, b) == pytest.approx(np.mean(per_frame))
    b = np.clip(a.astype(int) + np.random.default_rng(0).integers(-3, 4, a.shape), 0, 255)
    b = b.astype(np.uint8)
    yuv = video_io.psnr_yuv(a, b)
    planes_a, planes_b = video_io.yuv420_planes(a), video_io.yuv420_planes(b)
    assert planes_a[0].shape == (3, 8, 10) and planes_a[1].shape == (3, 4, 5)

    def plane_psnr(i, t):
        error = np.mean((planes_a[i][t].astype(float) - planes_b[i][t]) ** 2)
        return 10 * np.log10(255**2 / error)

    weighted = [(6 * plane_psnr(0, t) + plane_psnr(1, t) + plane_psnr(2, t)) / 8 for t in range(3)]
    expected = np.mean(weighted)
    assert yuv["psnr_yuv"] == pytest.approx(expected)


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory):
    """codec.py encode of a made 5-frame 18x26 video (PNG frames), as a user would."""
    folder = tmp_path_factory.mktemp("video")
    video = made_video()
    video_io.write_video(str(folder / "frames"), video_io.Video(video))
    out = run_script(
        "codec.py", "encode", "-i", str(folder / "frames"), "-o", str(folder / "v.c3v"),
        "--config", "configs/c3_video_small.py", "--config.fit.num_noise_steps=100",
        "--config.fit.max_ste_steps=10", "--config.fit.log_every=50",
        "--reconstruction", str(folder / "decoded"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return folder, video, out.stdout


DECODE_VIDEO = """
import sys
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(int(sys.argv[1]))
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
from coding.c3 import video
frames = video.decode(open(sys.argv[3], "rb").read(), jit=sys.argv[2] == "1")
sys.stdout.buffer.write(frames.tobytes())
"""


def test_video_file_decodes_bit_exactly_in_other_processes(coded_video):
    folder, video, stdout = coded_video
    assert "bpp" in stdout and "PSNR" in stdout
    data = (folder / "v.c3v").read_bytes()
    here = video_coding.decode(data)
    reconstruction = video_io.read_video(str(folder / "decoded")).frames
    np.testing.assert_array_equal(here, reconstruction)
    assert video_io.psnr_rgb(video, here) > 24  # a short fit of a made video
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    for threads, jit in [("1", "0"), ("2", "1")]:
        out = subprocess.run(
            [sys.executable, "-c", DECODE_VIDEO, threads, jit, str(folder / "v.c3v")],
            cwd=ROOT, env=env, capture_output=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        assert out.stdout == here.tobytes()


def test_codec_cli_video_decode_merge_and_errors(coded_video, tmp_path):
    folder, video, _ = coded_video
    source, decoded = str(folder / "v.c3v"), str(tmp_path / "d.y4m")
    out = run_in_process("codec.py", "decode", "-i", source, "-o", decoded)
    assert out.returncode == 0, out.stderr
    assert video_io.read_video(str(tmp_path / "d.y4m")).shape == video.shape[:3]
    out = run_in_process("codec.py", "merge", "-o", str(tmp_path / "m.c3v"), str(folder / "v.c3v"))
    assert out.returncode == 0 and "1 of 1 patches (complete)" in out.stdout
    assert (tmp_path / "m.c3v").read_bytes() == (folder / "v.c3v").read_bytes()
    out = run_in_process(
        "codec.py", "encode", "-i", str(tmp_path / "none.y4m"), "-o", str(tmp_path / "x.c3v"),
        "--config", "configs/c3_video_small.py",
    )  # fmt: skip
    assert out.returncode != 0 and "no such file" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "x.c3v").exists()
    out = run_in_process(
        "codec.py", "decode", "-i", str(folder / "v.c3v"), "-o", str(tmp_path / "d.mp4")
    )
    assert out.returncode != 0 and ".y4m or as a folder of PNG frames" in out.stderr


def test_train_fits_selected_patches_and_skips_finished_ones(tmp_path):
    """train.py runs the patches of a sweep entry (a patch file); a rerun skips it."""
    video_io.write_video(str(tmp_path / "v.y4m"), video_io.Video(made_video(4, 16, 16)))
    command = [
        "--config", "configs/c3_video_small.py", f"--config.data.video={tmp_path / 'v.y4m'}",
        "--config.video.patch=(2,16,16)", "--config.video.patches=1",
        "--config.fit.num_noise_steps=40", "--config.fit.max_ste_steps=5",
        "--config.fit.log_every=20", "--workdir", str(tmp_path / "run"),
    ]  # fmt: skip
    out = run_in_process("train.py", *command)
    assert out.returncode == 0, out.stderr[-2000:]
    path = tmp_path / "run" / "patches" / "v@0.001.p1.c3v"
    assert (tmp_path / "run" / "tensorboard" / "v@0.001.p1").is_dir()
    patch = video_coding.VideoFile.parse(path.read_bytes())
    assert sorted(patch.sections) == [1] and not patch.complete
    assert video_coding.decode_patch(patch.sections[1]).shape == (2, 16, 16, 3)
    again = run_in_process("train.py", *command)
    assert again.returncode == 0 and "already finished" in again.stderr


@pytest.mark.parametrize("switch", ["per_module_steps", "per_tensor_steps"])
def test_video_refuses_network_steps_its_file_cannot_carry(switch):
    from common.errors import ConfigError
    from configs import c3_video_small
    from pipelines.video import encode_video

    config = c3_video_small.get_config()
    setattr(config.fit, switch, True)
    with pytest.raises(ConfigError, match="one network step pair"):
        encode_video(config, made_video())
