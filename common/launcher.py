"""Launching sweeps: one Slurm job array, or a local process pool, over the work units.

An experiment is `<root>/<xid>/`: `config.py` (a frozen copy of the config file),
`units.txt` (one shell command per work unit; task i runs line i + 1), `job.sh` (the
rendered Slurm script), `launch.json` (what was launched, when, from which revision, and
every resubmission), `logs/`, `done/wid=<i>` (written by the unit's script when it ends
successfully: `common.cli.mark_unit_done`) and one run directory per work unit
(`wid=<wid>-<name>-<k=v,...>/`, made by the main script). xid is the Slurm array job id
of the first submission, or a timestamp for local runs.

Slurm submission holds the array (`sbatch --hold`) until the experiment directory,
named after the job id, is complete, then releases it; if anything fails in between,
the array is cancelled. `resubmit` submits the units without a `done/` marker again, as
a new array whose tasks find the experiment through $LZ_EXPERIMENT (the job id differs).
"""

import concurrent.futures
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys

from common.cli import UNIT_DONE_ENV
from common.config import load_sweep
from common.errors import ConfigError, LaunchError
from common.files import atomic_write_bytes, atomic_write_json
from common.progress import Progress
from common.rundir import git_revision

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAINS = {"train": "train.py", "eval": "eval.py", "itinf": "itinf.py"}


@dataclasses.dataclass
class Experiment:
    xid: str
    directory: str
    num_units: int
    commands: list[str]


def _script(main: str) -> str:
    if main not in MAINS:
        raise ConfigError(f"--main must be one of {', '.join(MAINS)}, not {main!r}.")
    path = os.path.join(REPO, MAINS[main])
    if not os.path.isfile(path):
        raise LaunchError(f"{MAINS[main]} does not exist in this version of the project.")
    return path


def unit_arguments(main: str, config: str | None, workdirs: list[str]) -> list[list[str]]:
    """The arguments of each work unit, without the experiment-specific ones."""
    if main == "eval":
        if not workdirs:
            raise ConfigError("--main eval needs --workdirs GLOB matching run directories.")
        return [["--workdir", os.path.abspath(w)] for w in workdirs]
    if not config:
        raise ConfigError(f"--main {main} needs --config.")
    sweep = load_sweep(config)  # ConfigError without get_hyper()
    hids = [["--hid", str(i)] for i in range(len(sweep))]
    if main == "itinf":
        # One work unit per (trained run, sweep entry = image shard).
        if not workdirs:
            raise ConfigError("--main itinf needs --workdirs GLOB matching trained runs.")
        return [h + [f"--config.warm_start={os.path.abspath(w)}"] for w in workdirs for h in hids]
    return hids


def commands_for(
    main: str, experiment: str, unit_args: list[list[str]], extra_args: str, frozen: str | None
) -> list[str]:
    """One shell command per work unit (the lines of units.txt)."""
    script = _script(main)
    extra = shlex.split(extra_args or "")
    commands = []
    for i, args in enumerate(unit_args):
        argv = [sys.executable, script]
        if frozen:
            argv += ["--config", frozen, "--root", experiment]
        done = f"{UNIT_DONE_ENV}={shlex.quote(done_marker(experiment, i))}"
        commands.append(done + " " + shlex.join(argv + args + extra))
    return commands


def done_marker(experiment: str, unit: int) -> str:
    return os.path.join(experiment, "done", f"wid={unit}")


def unfinished_units(experiment: str) -> list[int]:
    """The work units of an experiment without a done marker, in order."""
    units = os.path.join(experiment, "units.txt")
    if not os.path.isfile(units):
        raise ConfigError(f"{experiment} is not an experiment directory (no units.txt).")
    with open(units) as f:
        count = sum(1 for line in f if line.strip())
    return [i for i in range(count) if not os.path.exists(done_marker(experiment, i))]


def array_spec(units: list[int], limit: int = 0) -> str:
    """Slurm's --array value: ranges of consecutive units, then %limit if limit > 0."""
    if not units:
        raise ValueError("no units")
    parts, start, previous = [], units[0], units[0]
    for unit in [*units[1:], None]:
        if unit is not None and unit == previous + 1:
            previous = unit
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = unit
    return ",".join(parts) + (f"%{limit}" if limit > 0 else "")


def _prepare(
    directory: str, main: str, config: str | None, unit_args, extra_args: str, script: str
) -> list[str]:
    os.makedirs(os.path.join(directory, "logs"), exist_ok=True)
    frozen = None
    if config:
        frozen = os.path.join(directory, "config.py")
        shutil.copyfile(config, frozen)
    commands = commands_for(main, directory, unit_args, extra_args, frozen)
    atomic_write_bytes(os.path.join(directory, "units.txt"), ("\n".join(commands) + "\n").encode())
    atomic_write_bytes(os.path.join(directory, "job.sh"), script.encode())
    atomic_write_json(
        os.path.join(directory, "launch.json"),
        {
            "argv": sys.argv,
            "main": main,
            "config": config and os.path.abspath(config),
            "num_units": len(commands),
            "git_revision": git_revision(),
            "launched": datetime.datetime.now().isoformat(timespec="seconds"),
            "resubmissions": [],
        },
    )
    return commands


def submit_slurm(
    main: str,
    config: str | None,
    unit_args,
    root: str,
    script: str,
    extra_args: str = "",
    sbatch_args: str = "",
    array_limit: int = 0,
) -> Experiment:
    """Submits one held job array, prepares `<root>/<xid>`, then releases the array."""
    root = os.path.abspath(root)
    n = len(unit_args)
    array = array_spec(list(range(n)), array_limit)
    xid = _sbatch(["--hold", f"--array={array}", *shlex.split(sbatch_args)], script)
    directory = os.path.join(root, xid)
    try:
        commands = _prepare(directory, main, config, unit_args, extra_args, script)
        release = subprocess.run(
            ["scontrol", "release", xid], capture_output=True, text=True, timeout=60
        )
        if release.returncode != 0:
            raise LaunchError(f"scontrol release {xid} failed: {release.stderr.strip()}")
    except BaseException:
        subprocess.run(["scancel", xid], capture_output=True, timeout=60)
        raise
    return Experiment(xid, directory, n, commands)


def _sbatch(args: list[str], script: str) -> str:
    """Submits `script` (on stdin: nothing is written before sbatch accepts it); the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise LaunchError("sbatch not found: this machine has no Slurm client (use --local).")
    out = subprocess.run(
        [sbatch, "--parsable", *args], input=script, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        raise LaunchError(f"sbatch failed: {lines[-1] if lines else f'exit {out.returncode}'}")
    xid = out.stdout.strip().split(";")[0]
    if not xid.isdigit():
        raise LaunchError(f"sbatch printed no job id: {out.stdout.strip()!r}")
    return xid


def _record_resubmission(directory: str, entry: dict) -> None:
    path = os.path.join(directory, "launch.json")
    with open(path) as f:
        launched = json.load(f)
    launched.setdefault("resubmissions", []).append(entry)
    atomic_write_json(path, launched)


def resubmit_slurm(
    directory: str, units: list[int], sbatch_args: str = "", array_limit: int = 0
) -> str:
    """Submits the given units of an existing experiment again; returns the new job id.

    The new array's tasks find the experiment through $LZ_EXPERIMENT and log to its
    logs/ folder (appending), since their job id is not the experiment's xid."""
    directory = os.path.abspath(directory)
    with open(os.path.join(directory, "job.sh")) as f:
        script = f.read()
    logs = os.path.join(directory, "logs")
    args = [
        f"--array={array_spec(units, array_limit)}",
        f"--output={logs}/wid=%a.out",
        f"--error={logs}/wid=%a.err",
        f"--export=ALL,LZ_EXPERIMENT={directory}",
        *shlex.split(sbatch_args),
    ]
    job = _sbatch(args, script)
    _record_resubmission(
        directory,
        {
            "job": job,
            "units": units,
            "git_revision": git_revision(),
            "submitted": datetime.datetime.now().isoformat(timespec="seconds"),
        },
    )
    return job


def run_local(
    main: str, config: str | None, unit_args, root: str, script: str, extra_args: str, jobs: int
) -> tuple[Experiment, list[int]]:
    """Runs every work unit here, `jobs` at a time; returns their exit codes."""
    xid = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = os.path.join(os.path.abspath(root), xid)
    if os.path.exists(directory):
        raise LaunchError(f"{directory} exists already; wait a second and relaunch.")
    commands = _prepare(directory, main, config, unit_args, extra_args, script)
    codes = run_units(directory, list(range(len(commands))), jobs)
    return Experiment(xid, directory, len(commands), commands), [codes[i] for i in codes]


def run_units(directory: str, units: list[int], jobs: int) -> dict[int, int]:
    """Runs the given work units of an experiment here, `jobs` at a time, printing
    progress; returns {unit: exit code}."""
    with open(os.path.join(directory, "units.txt")) as f:
        commands = [line.rstrip("\n") for line in f if line.strip()]

    def run_unit(i: int) -> int:
        logs = os.path.join(directory, "logs", f"wid={i}")
        with open(logs + ".out", "ab") as out, open(logs + ".err", "ab") as err:
            return subprocess.run(
                commands[i], shell=True, cwd=REPO, stdout=out, stderr=err
            ).returncode

    progress, failed, codes = Progress(len(units)), [], {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_unit, i): i for i in units}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            codes[i] = future.result()
            if codes[i] != 0:
                failed.append(i)
            progress.update(progress.done + 1)
            status = "done" if codes[i] == 0 else f"FAILED (exit {codes[i]})"
            print(
                f"work unit {i} {status}; {progress} units"
                + (f"; failed so far: {sorted(failed)}" if failed else ""),
                flush=True,
            )
    return dict(sorted(codes.items()))


def describe(experiment: Experiment) -> str:
    return json.dumps(
        {"xid": experiment.xid, "directory": experiment.directory, "units": experiment.num_units}
    )
