"""bench: BD-rate identities, classical codecs for real on a small image, the plot tool."""

import json

import numpy as np
import pytest
from PIL import Image

from bench import bdrate, classical, codecs, plot
from bench.curves import Curve, CurveError, read_curve
from coding import hevc
from common import results, tools
from tests.helpers import smooth_image

RATES = [0.1, 0.2, 0.35, 0.6, 1.0, 1.6]
PSNRS = [27.0, 29.5, 31.8, 34.0, 36.5, 39.0]


def curve(name="a", rates=RATES, psnrs=PSNRS) -> Curve:
    return Curve(name, list(rates), list(psnrs))


@pytest.mark.parametrize("method", bdrate.METHODS)
def test_bd_rate_identities(method):
    anchor = curve()
    assert bdrate.bd_rate(anchor, anchor, method) == pytest.approx(0, abs=1e-12)
    for k in (0.7, 1.3, 2.0):
        scaled = curve("k", [r * k for r in RATES])
        assert bdrate.bd_rate(anchor, scaled, method) == pytest.approx(k - 1, rel=1e-9)
    for d in (-0.5, 0.25, 1.0):
        shifted = curve("d", psnrs=[p + d for p in PSNRS])
        assert bdrate.bd_psnr(anchor, shifted, method) == pytest.approx(d, rel=1e-9)
    assert bdrate.bd_psnr(anchor, anchor, method) == pytest.approx(0, abs=1e-12)


def test_non_overlapping_curves_are_an_error():
    low = curve("low", psnrs=[p - 20 for p in PSNRS])
    for method in bdrate.METHODS:
        with pytest.raises(bdrate.BDRateError, match="do not overlap"):
            bdrate.bd_rate(curve(), low, method)
    with pytest.raises(bdrate.BDRateError, match="at least 4"):
        bdrate.bd_rate(curve(), curve("few", RATES[:3], PSNRS[:3]), "cubic")


def test_curves_from_json_and_csv_and_the_cli(tmp_path, capsys):
    (tmp_path / "anchor.csv").write_text(
        "bpp,psnr\n" + "".join(f"{r},{p}\n" for r, p in zip(RATES, PSNRS, strict=True))
    )
    results = {"name": "ours", "results": {"bpp": [r * 0.9 for r in RATES], "psnr-rgb": PSNRS}}
    (tmp_path / "ours.json").write_text(json.dumps(results))
    assert read_curve(str(tmp_path / "ours.json")).name == "ours"
    # The command line (python -m bench.bdrate) is bdrate.main: called here.
    assert bdrate.main([str(tmp_path / "anchor.csv"), str(tmp_path / "ours.json")]) == 0
    assert "BD-rate -10.00 %" in capsys.readouterr().out
    assert bdrate.main([str(tmp_path / "anchor.csv"), "/nonexistent.csv"]) == 2
    assert capsys.readouterr().err.startswith("bench.bdrate: error:")
    with pytest.raises(CurveError):
        read_curve(str(tmp_path / "anchor.csv").replace("anchor", "missing"))


def test_ycbcr_round_trip_is_lossless_enough():
    image = smooth_image(32, 48)
    back = hevc.ycbcr_to_rgb(hevc.rgb_to_ycbcr(image))
    assert np.abs(back.astype(int) - image).max() <= 1


@pytest.mark.parametrize("name", sorted(codecs.CODECS))
@pytest.mark.parametrize("height,width", [(65, 97), (33, 47)])
def test_each_codec_round_trips_a_small_image(name, height, width, tmp_path, codec_tools):
    path = tmp_path / "small.png"
    Image.fromarray(smooth_image(height, width, seed=3)).save(path)
    codec = codecs.CODECS[name]
    low = classical._measure((name, str(path), codec.qualities[0], "im"))
    high = classical._measure((name, str(path), codec.qualities[-1], "im"))
    for row in (low, high):
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (height * width))
        assert row["height"] == height and row["width"] == width and row["model"] == name
    # The best setting gives a faithful image (a real decode, not a placeholder).
    assert high["psnr"] > 30 and high["psnr"] > low["psnr"] and high["bpp"] > low["bpp"]


def test_missing_tool_names_the_package(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda _: None)
    with pytest.raises(codecs.CodecError, match="apt-get install libjxl-tools"):
        codecs.CODECS["jxl"].check()


def test_classical_cli_and_plot(tmp_path, codec_tools):
    images = tmp_path / "images"
    images.mkdir()
    for seed in (1, 2):
        Image.fromarray(smooth_image(32, 48, seed=seed)).save(images / f"im{seed}.png")
    code = classical.main(
        ["--codecs", "jpeg,webp", "--images", str(images), "--out", str(tmp_path / "out")]
    )
    assert code == 0
    summary = json.loads((tmp_path / "out" / "jpeg.json").read_text())
    assert len(summary["results"]["bpp"]) == len(codecs.CODECS["jpeg"].qualities)
    assert summary["results"]["num_images"][0] == 2 and "Pillow" in summary["description"]
    rows = sorted((tmp_path / "out" / "jpeg" / "results").iterdir())
    assert len(rows) == 2 * 12
    # A rerun resumes: measured rows are kept, not recomputed.
    stamps = [row.stat().st_mtime_ns for row in rows]
    assert (
        classical.main(
            ["--codecs", "jpeg", "--images", str(images), "--out", str(tmp_path / "out")]
        )
        == 0
    )
    assert [row.stat().st_mtime_ns for row in rows] == stamps
    png = tmp_path / "rd.png"
    files = [str(tmp_path / "out" / "jpeg.json"), str(tmp_path / "out" / "webp.csv")]
    assert plot.main(["-f", *files, "-o", str(png), "--table"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.main(["-f", "/nonexistent.json", "-o", str(png)]) == 2
    assert classical.main(["--codecs", "nope", "--images", str(images), "--out", "x"]) == 2


def test_plot_reference_anchor_filter_ms_ssim_and_complexity(tmp_path, capsys):
    anchors = tmp_path / "anchors"
    anchors.mkdir()

    def csv_curve(name, rates, psnrs):
        lines = "".join(f"{r},{p}\n" for r, p in zip(rates, psnrs, strict=True))
        (anchors / f"{name}.csv").write_text("bpp,psnr\n" + lines)

    csv_curve("JPEG", [r * 2 for r in RATES], PSNRS)
    csv_curve("VTM", RATES, PSNRS)  # the default reference, although not first
    (anchors / "INDEX.csv").write_text("file,method,n_points\nVTM,VTM,6\n")
    (anchors / "per_image.csv").write_text("image,bpp,psnr\nk01,0.5,30\n")

    def results(name, scale, macs, ms_ssim=True):
        data = {"bpp": [r * scale for r in RATES], "psnr-rgb": PSNRS,
                "macs_per_pixel": [macs] * len(RATES)}  # fmt: skip
        if ms_ssim:
            data["ms-ssim-rgb"] = [0.9, 0.93, 0.95, 0.97, 0.98, 0.99]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "results": data}))
        return str(path)

    files = [results("c3", 0.8, 2300), results("big", 0.7, 300000)]
    assert plot.main(["-f", *files, "--anchors", str(anchors), "--table"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 files that are not RD curves: INDEX.csv, per_image.csv" in captured.err
    assert "BD-rate vs VTM" in captured.out and "| JPEG | +100.00 %" in captured.out
    assert "| c3 | -20.00 %" in captured.out
    args = ["-f", *files, "--anchors", str(anchors), "--table", "--reference", "c3"]
    assert plot.main(args) == 0 and "BD-rate vs c3" in capsys.readouterr().out
    assert plot.main(["-f", *files, "--table", "--reference", "nope"]) == 2
    assert "is not one of the curves" in capsys.readouterr().err
    # MS-SSIM: only the curves that have it (the anchors' CSVs do not).
    assert plot.main(["-f", *files, "--anchors", str(anchors), "--metric", "ms-ssim",
                      "--table", "-o", str(tmp_path / "ms.png")]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "no ms-ssim values, left out: JPEG, VTM" in captured.err
    assert "BD-rate vs c3" in captured.out and "| big | -12.50 %" in captured.out
    # Rate vs complexity: each curve with MACs is one point against the reference.
    out = tmp_path / "macs.png"
    assert plot.main(["-f", *files, "--anchors", str(anchors), "--complexity", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = plot.complexity_points([read_curve(f) for f in files], read_curve(files[0]))
    assert points == [("big", 300.0, pytest.approx(-12.5))]


@pytest.mark.parametrize("name", sorted(codecs.LOSSLESS_CODECS))
def test_each_lossless_codec_decodes_exactly(name, tmp_path, codec_tools):
    height, width = 33, 47
    path = tmp_path / "small.png"
    image = smooth_image(height, width, seed=5)
    Image.fromarray(image).save(path)
    row = classical._measure((name, str(path), "lossless", "im"))
    assert row["lossless"] and row["mse"] == 0 and row["psnr"] is None
    assert row["bpsp"] == pytest.approx(8 * row["bytes"] / (3 * height * width))
    assert row["bpp"] == pytest.approx(3 * row["bpsp"])
    # A real coder: fewer bits than the raw 8 per sub-pixel on a smooth image.
    assert 0 < row["bpsp"] < 8


def test_a_lossy_decode_is_not_a_lossless_row():
    image = smooth_image(16, 16)
    off = image.copy()
    off[3, 4, 1] ^= 1
    args = dict(image="im", model="m", original=image, data=b"x", encode_seconds=None)
    with pytest.raises(results.EvaluationError, match="not lossless: 1 of 768 values differ"):
        results.row_from_file(decoded=off, decode_seconds=None, lossless=True, **args)
    with pytest.raises(results.EvaluationError, match="decodes to"):
        results.row_from_file(decoded=image[:8], decode_seconds=None, lossless=True, **args)


def test_lossless_cli_aggregate_and_bar_chart(tmp_path, capsys, codec_tools):
    images = tmp_path / "images"
    images.mkdir()
    for seed in (1, 2):
        Image.fromarray(smooth_image(24, 40, seed=seed)).save(images / f"im{seed}.png")
    out = tmp_path / "out"
    args = ["--codecs", "png,webp_lossless", "--images", str(images), "--out", str(out)]
    assert classical.main(args) == 0
    summary = json.loads((out / "png.json").read_text())
    rows = [json.loads(p.read_text()) for p in sorted((out / "png" / "results").iterdir())]
    assert summary["lossless"] and summary["results"]["num_images"] == 2
    assert summary["results"]["bpsp"] == pytest.approx(np.mean([r["bpsp"] for r in rows]))
    assert not (out / "png.csv").exists()  # no RD curve for a single lossless point
    assert summary["commit"] == rows[0]["commit"] and len(rows[0]["commit"]) == 40
    assert "png: " in capsys.readouterr().out
    files = [str(out / "png.json"), str(out / "webp_lossless.json")]
    bars = tmp_path / "bars.png"
    assert plot.main(["-f", *files, "-o", str(bars), "--table", "--reference", "png"]) == 0
    assert bars.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "| png | " in table and "+0.00 %" in table and "vs png" in table
    # Lossless and lossy files do not share a plot; a lossless file is not an RD curve.
    (tmp_path / "rd.csv").write_text("bpp,psnr\n0.1,30\n0.2,32\n")
    assert plot.main(["-f", files[0], str(tmp_path / "rd.csv"), "--table"]) == 2
    assert "cannot share a plot" in capsys.readouterr().err
    with pytest.raises(CurveError, match="a lossless result"):
        read_curve(files[0])
    args = ["--codecs", "png", "--qualities", "3", "--images", str(images), "--out", str(out)]
    assert classical.main(args) == 2
    assert "no quality settings" in capsys.readouterr().err


def test_ablation_resume_keeps_its_commit_and_declared_reuse():
    """benchmarks/ablation.py's resume: rows of the run's commit are kept; rows of a
    reused commit only for tools not rerun; rows without a commit take the report's."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", "ablation.py")
    spec = importlib.util.spec_from_file_location("ablation_under_test", path)
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)

    def row(tool, commit=None):
        r = {"tool": tool, "protocol": "crop23", "seed": 0, "rd_loss": 1.0}
        return r if commit is None else r | {"commit": commit}

    old = {"commit": "aaa111", "results": [row("recipe"), row("soap"), row("rdoq", "bbb222")]}
    tools = lambda rows: sorted(r["tool"] for r in rows)  # noqa: E731
    assert tools(ablation.kept_rows(old, "bbb222", None, ["soap"])) == ["rdoq"]
    assert ablation.kept_rows(old, "ccc333", None, ["soap"]) == []
    reused = ablation.kept_rows(old, "ccc333", "aaa", ["soap", "c3_plus"])
    assert tools(reused) == ["recipe"] and reused[0]["commit"] == "aaa111"
    assert tools(ablation.kept_rows(old, "aaa111", None, ["soap"])) == ["recipe", "soap"]
    # Rows kept from two commits at once (comma-separated).
    both = ablation.kept_rows(old, "ccc333", "aaa,bbb", ["soap"])
    assert tools(both) == ["rdoq", "recipe"]
