#!/usr/bin/env python3
"""Runs a config's whole sweep: one Slurm job array, or locally with a process pool.

./launch.py --main train --config configs/c3_kodak.py [--root runs]
    [--sargs "--partition=gpu --gres=gpu:1"] [--args "--config.fit.num_noise_steps=1000"]
    [--cpus_per_task 2 --mem 8G --time 24:00:00] [--setup "module load cuda"] [--dry_run]
./launch.py --main train --config configs/c3_quickstart.py --local --jobs 2
./launch.py --main eval --workdirs "runs/123/wid=*" [--args "--dataset=DIR"]
./launch.py --main itinf --config configs/itinf_sga.py --workdirs "runs/123/wid=*"
    --args "--config.data.root=DIR"
./launch.py --resubmit runs/123 [--local] [--array_limit 8] [--sargs "--time=48:00:00"]

Task i of the array runs `<main>.py --hid i` (train), evaluates the i-th run directory
(eval), or refines one image shard (--hid) with one trained run (itinf: runs x shards).
Results land in <root>/<xid>/wid=<i>-<name>-<k=v,...>/; merge them with
`python eval.py --collect <root>/<xid> --out DIR`. A unit that ends successfully writes
<root>/<xid>/done/wid=<i>; `--resubmit <root>/<xid>` runs the units without one again
(failed, timed out, cancelled), as a new Slurm array or here with --local; they resume
from their checkpoints. --array_limit N runs at most N tasks at once (Slurm's %N);
--signal S asks Slurm for SIGTERM S seconds before the time limit (default 180: the
running chunk ends and its checkpoint is written inside that time).
"""

import glob
import os

from absl import flags

from common.cli import run_main
from common.config import load_sweep
from common.errors import ConfigError, LaunchError

_MAIN = flags.DEFINE_enum("main", "train", ["train", "eval", "itinf"], "Script to run.")
_CONFIG = flags.DEFINE_string("config", None, "Config file with get_hyper() (train, itinf).")
_WORKDIRS = flags.DEFINE_string(
    "workdirs", None, "eval: glob of run directories; itinf: glob of trained runs to refine."
)
_ROOT = flags.DEFINE_string("root", "runs", "Where experiments go: <root>/<xid>/...")
_ARGS = flags.DEFINE_string("args", "", "Extra arguments for every work unit.")
_SARGS = flags.DEFINE_string("sargs", "", "Extra sbatch arguments (partition, gres, ...).")
_CPUS = flags.DEFINE_integer("cpus_per_task", 2, "Slurm: CPUs per work unit.")
_MEM = flags.DEFINE_string("mem", "8G", "Slurm: memory per work unit.")
_TIME = flags.DEFINE_string("time", "", "Slurm: time limit per work unit (e.g. 24:00:00).")
_SETUP = flags.DEFINE_string("setup", None, "Slurm: shell lines run before Python.")
_LOCAL = flags.DEFINE_bool("local", False, "Run here, without Slurm.")
_JOBS = flags.DEFINE_integer("jobs", 1, "--local: work units at a time.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print what would run; submit nothing.")
_RESUBMIT = flags.DEFINE_string(
    "resubmit", None, "An experiment directory <root>/<xid>: run its unfinished units again."
)
_ARRAY_LIMIT = flags.DEFINE_integer(
    "array_limit", 0, "Slurm: at most this many tasks of the array at once (0: no limit)."
)
_SIGNAL = flags.DEFINE_integer(
    "signal",
    None,
    "Slurm: SIGTERM this many seconds before the time limit, for a last checkpoint "
    "(default: slurm_template.DEFAULT_SIGNAL_SECONDS; 0: none).",
)


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments {argv[1:]}.")
    import slurm_template
    from common import launcher

    if _ARRAY_LIMIT.value < 0 or (_SIGNAL.value or 0) < 0:
        raise ConfigError("--array_limit and --signal must be >= 0.")
    if _RESUBMIT.value:
        _resubmit(launcher, _RESUBMIT.value)
        return
    signal_seconds = slurm_template.DEFAULT_SIGNAL_SECONDS
    if _SIGNAL.value is not None:
        signal_seconds = _SIGNAL.value
    main_name, config = _MAIN.value, _CONFIG.value
    if config and not os.path.isfile(config):
        raise ConfigError(f"config file {config!r} does not exist.")
    workdirs = sorted(glob.glob(_WORKDIRS.value)) if _WORKDIRS.value else []
    if main_name in ("eval", "itinf") and _WORKDIRS.value and not workdirs:
        raise ConfigError(f"--workdirs {_WORKDIRS.value!r} matches no directory.")
    unit_args = launcher.unit_arguments(main_name, config, workdirs)
    name = main_name
    if config:
        name = f"{main_name}-{os.path.splitext(os.path.basename(config))[0]}"
        load_sweep(config)
    root = os.path.abspath(_ROOT.value)
    script = slurm_template.render(
        name,
        root,
        launcher.REPO,
        _CPUS.value,
        _MEM.value,
        _TIME.value,
        setup=_SETUP.value,
        signal_seconds=signal_seconds,
    )
    print(f"{main_name}: {len(unit_args)} work units -> {root}/<xid>/")
    if _DRY_RUN.value:
        commands = launcher.commands_for(
            main_name, os.path.join(root, "<xid>"), unit_args, _ARGS.value,
            os.path.join(root, "<xid>", "config.py") if config else None,
        )  # fmt: skip
        array = launcher.array_spec(list(range(len(unit_args))), _ARRAY_LIMIT.value)
        print(f"sbatch --parsable --hold --array={array} {_SARGS.value}".rstrip())
        print(script)
        print("\n".join(commands))
        return
    if _LOCAL.value:
        experiment, codes = launcher.run_local(
            main_name, config, unit_args, root, script, _ARGS.value, _JOBS.value
        )
        failed = [i for i, code in enumerate(codes) if code != 0]
        print(f"experiment {experiment.xid}: {experiment.directory}")
        if failed:
            raise LaunchError(
                f"work units {failed} failed; see {experiment.directory}/logs/wid=<i>.err"
            )
        print(f"all {experiment.num_units} work units finished.")
        return
    experiment = launcher.submit_slurm(
        main_name, config, unit_args, root, script, _ARGS.value, _SARGS.value, _ARRAY_LIMIT.value
    )
    print(f"experiment {experiment.xid}: job array {experiment.xid}_[0-{experiment.num_units - 1}]")
    print(f"results: {experiment.directory}/wid=*/ ; logs: {experiment.directory}/logs/")
    print(f"merge: python eval.py --collect {experiment.directory} --out DIR")


def _resubmit(launcher, directory: str) -> None:
    """Runs the unfinished units of an existing experiment again (Slurm or --local)."""
    if not os.path.isdir(directory):
        raise ConfigError(f"--resubmit {directory!r} is not a directory.")
    units = launcher.unfinished_units(directory)
    if not units:
        print(f"{directory}: every work unit has finished; nothing to resubmit.")
        return
    print(f"{directory}: {len(units)} unfinished work units: {launcher.array_spec(units)}")
    if _DRY_RUN.value:
        return
    if _LOCAL.value:
        codes = launcher.run_units(directory, units, _JOBS.value)
        failed = [i for i, code in codes.items() if code != 0]
        if failed:
            raise LaunchError(f"work units {failed} failed; see {directory}/logs/wid=<i>.err")
        print(f"all {len(units)} resubmitted work units finished.")
        return
    job = launcher.resubmit_slurm(directory, units, _SARGS.value, _ARRAY_LIMIT.value)
    print(f"resubmitted as job array {job}_[{launcher.array_spec(units)}]")


if __name__ == "__main__":
    run_main(main, "launch.py", tensorflow=False)
