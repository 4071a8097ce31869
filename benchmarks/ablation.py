"""Ablation of the Cool-chic 5 tools on C3's recipe, measured from real files, as JSON.

  python benchmarks/ablation.py --kodak DIR [--protocols crop23,crop01] [--seeds 0]
      [--tools recipe,soap,...] [--out benchmarks/results/ablation.json]

Issue 13's table: C3's Kodak recipe (`configs/c3_kodak.py`), each tool of
`configs/c3_plus.py` (and the ones it leaves off) switched on alone, and all of c3_plus,
on the kodim23 and kodim01 256x256 crops at (x=256, y=128), lambda 1e-3, 2000
iterations in all (`benchmarks/rd_small.py`'s protocols: 1800 stage-1 + 200 stage-2
steps, a warm-up's extra candidate steps taken from stage 1). Every row is a file: the
fit, its bitstream, the decoded 8-bit image (`rd_small.run_one`). The summary gives each
row's RD loss against the recipe's on the same crop and seed.

Rows are written as they finish, each with its commit; a rerun with the same --out and
commit skips the rows it already has, so the table can be filled across sessions (or
split over processes with one --out each: --protocols crop23 and --protocols crop01).
When a change moves only some rows (e.g. SOAP's code: the `soap` and `c3_plus` rows),
`--tools soap,c3_plus --reuse-commit C` reruns those and keeps the other rows measured at
commit C, each still naming its commit; say in the JSON's note why their fits are the
same at both commits (e.g. a short fit compared to the last bit).
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rd_small  # noqa: E402

from common.files import atomic_write_json  # noqa: E402

RECIPE = "configs/c3_kodak.py"
PLUS = "configs/c3_plus.py"
# tool -> (config, overrides). The tools with the settings c3_plus uses (docs/c3.md).
TOOLS = {
    "recipe": (RECIPE, []),
    "learned_upsampling": (RECIPE, ["model.upsampling=learned"]),
    "inter_grid_context": (
        RECIPE,
        ["model.inter_grid_features=6", "model.inter_grid_grids=3", "model.num_hyperlatents=3"],
    ),
    # Residual layers keep their input's width: 14 without the inter-grid features
    # (c3_plus: 14 + 6 = 20, Cool-chic 5's).
    "cc5_context_model": (
        RECIPE,
        ["model.context_neighbours=14", "model.arm_residual=true", "model.arm_hidden=[14,14]"],
    ),
    "cc5_synthesis": (
        RECIPE,
        [
            "model.synthesis_hidden=[48]",
            "model.synthesis_activation=relu",
            "model.synthesis_stabiliser=true",
            "model.synthesis_init=cool_chic",
        ],
    ),
    "soap": (RECIPE, ["fit.optimizer=soap"]),
    "per_module_steps": (RECIPE, ["fit.per_module_steps=true"]),
    "per_tensor_steps": (RECIPE, ["fit.per_tensor_steps=true"]),
    "rdoq": (RECIPE, ["fit.rdoq=true"]),
    # Cool-chic 5's warm-up: 5 x 50 candidate steps, the best 2 x 50 more; the winner's
    # 100 steps are its stage 1's, the other 250 come out of stage 1's 1800.
    "warm_up": (
        RECIPE,
        [
            "fit.warmup_candidates=5",
            "fit.warmup_keep=2",
            "fit.warmup_steps=50",
            "fit.num_noise_steps=1550",
        ],
    ),
    "gaussian_noise": (
        RECIPE,
        ["fit.noise=gaussian", "fit.temperature_start=0.35", "fit.temperature_end=0.08"],
    ),
    "keep_best": (RECIPE, ["fit.keep_best_every=100"]),
    # Cool-chic 5's soft-round temperatures with C3's Kumaraswamy noise (c3_plus's).
    "temperature_schedule": (RECIPE, ["fit.temperature_start=0.35", "fit.temperature_end=0.08"]),
    "c3_plus": (PLUS, []),
}


def kept_rows(old: dict, commit: str, reuse_commit: str | None, rerun: list[str]) -> list[dict]:
    """The rows of an earlier report that a run at `commit` keeps: those of the same
    commit, and with `reuse_commit` (commits, comma-separated), those of these commits
    whose tool is not rerun. Rows
    from before rows had their own commit take the report's."""
    reused_commits = [c for c in (reuse_commit or "").split(",") if c]
    kept = []
    for row in old.get("results", []):
        row = {"commit": old.get("commit")} | row
        same = row["commit"] == commit
        reused = any(str(row["commit"]).startswith(c) for c in reused_commits)
        if same or (reused and row["tool"] not in rerun):
            kept.append(row)
    return kept


def summarise(rows: list[dict]) -> list[dict]:
    """Per crop and seed: each tool's RD loss, PSNR and bpp, and its change against the
    recipe's RD loss in percent (negative: better)."""
    recipe = {(r["protocol"], r["seed"]): r["rd_loss"] for r in rows if r["tool"] == "recipe"}
    table = []
    for r in rows:
        base = recipe.get((r["protocol"], r["seed"]))
        table.append(
            {
                "protocol": r["protocol"],
                "seed": r["seed"],
                "tool": r["tool"],
                "rd_loss": r["rd_loss"],
                "psnr": r["psnr"],
                "bpp": r["bpp"],
                "change_vs_recipe_percent": None
                if base is None
                else 100 * (r["rd_loss"] / base - 1),
                "commit": r.get("commit"),
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", required=True, help="folder with kodim01.png ... kodim24.png")
    parser.add_argument("--protocols", default="crop23,crop01")
    parser.add_argument("--seeds", default="0", help="comma-separated fit seeds")
    parser.add_argument("--tools", default=",".join(TOOLS), help="rows, from: " + ", ".join(TOOLS))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/ablation.json"))
    parser.add_argument(
        "--reuse-commit",
        default=None,
        help="keep the rows of --out measured at these commits (prefixes, comma-separated) "
        "for the tools not in --tools",
    )
    args = parser.parse_args()
    tools = args.tools.split(",")
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        parser.error(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    protocols = args.protocols.split(",")
    for protocol in protocols:
        if protocol not in ("crop23", "crop01"):
            parser.error(f"--protocols: crop23 and/or crop01, not {protocol!r}")
    if not os.path.isdir(args.kodak):
        parser.error(f"--kodak {args.kodak!r} is not a folder")
    from common.rundir import provenance

    recorded = provenance(ROOT)
    rows = []
    if os.path.exists(args.out):  # resume: keep the rows of the same commit (or reused)
        with open(args.out) as f:
            rows = kept_rows(json.load(f), recorded["commit"], args.reuse_commit, tools)
    done = {(r["tool"], r["protocol"], r["seed"]) for r in rows}
    listed = [t for t in TOOLS if t in tools or any(r["tool"] == t for r in rows)]
    report = {
        "benchmark": "Ablation of the Cool-chic 5 tools on C3's recipe, files, 2000 iterations",
        **recorded,
        "tools": {t: {"config": TOOLS[t][0], "overrides": TOOLS[t][1]} for t in listed},
        "machine": "2-core CPU, no GPU",
        "rd_loss": "MSE of the decoded 8-bit image on the [0, 1] scale + lambda * file bpp",
    }

    def save() -> None:  # rows in the tools' order, whatever order they were run or kept in
        rows.sort(key=lambda r: (r["protocol"], r["seed"], list(TOOLS).index(r["tool"])))
        atomic_write_json(args.out, report | {"summary": summarise(rows), "results": rows})

    seeds = [int(s) for s in args.seeds.split(",")]
    for protocol in protocols:
        (name,), (lmbda,), noise_steps, ste_steps = rd_small.PROTOCOLS[protocol]
        image = rd_small.load_image(args.kodak, name)
        for seed in seeds:
            for tool in tools:
                if (tool, protocol, seed) in done:
                    continue
                path, overrides = TOOLS[tool]
                config = rd_small.make_config(os.path.join(ROOT, path), overrides)
                overridden = [item.split("=", 1)[0] for item in overrides]
                row = rd_small.run_one(
                    config, image, name, lmbda, noise_steps, ste_steps, seed, overridden
                )
                rows.append(
                    row | {"protocol": protocol, "tool": tool, "commit": recorded["commit"]}
                )
                save()
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
