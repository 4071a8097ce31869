"""The Slurm job script that `launch.py` renders and submits as one job array.

Task i of the array runs line i + 1 of `<root>/<xid>/units.txt` (one shell command per
work unit, written by launch.py), so the script is the same for train, eval and itinf.
Edit `SETUP` (or pass `launch.py --setup "..."`) for what your cluster needs before
Python runs: module loads, conda or venv activation, scratch directories.
"""

import shlex

# Your environment: module loads, `source /path/to/venv/bin/activate`, `conda activate`.
SETUP = ""

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --output={root}/%A/logs/wid=%a.out
#SBATCH --error={root}/%A/logs/wid=%a.err
#SBATCH --open-mode=append
#SBATCH --requeue
{resources}
# ---- environment (launch.py --setup, or SETUP in slurm_template.py) ----
{setup}
# -------------------------------------------------------------------------
set -eu
# A resubmission (launch.py --resubmit) has another job id: it names the experiment.
EXPERIMENT=${{LZ_EXPERIMENT:-{root_quoted}/"$SLURM_ARRAY_JOB_ID"}}
COMMAND=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$EXPERIMENT/units.txt")
RESTART=${{SLURM_RESTART_COUNT:-0}}
echo "[$(date -Is)] $(hostname) task $SLURM_ARRAY_TASK_ID, restart $RESTART: $COMMAND"
cd {repo_quoted}
# exec: Python becomes the job's main process (the batch shell) and receives Slurm's
# SIGTERM: before a preemption or requeue, and --signal seconds before the time limit
# (B: signals the batch shell); it saves a checkpoint and exits 143, and a requeued or
# resubmitted task resumes.
exec bash -c "$COMMAND"
"""


# Seconds between Slurm's SIGTERM and the time limit: enough for the running chunk to end
# and its checkpoint to be written (a CPU chunk of 100 C3 steps at 768x512 takes ~69 s;
# Slurm's own default warning, KillWait, is 30 s).
DEFAULT_SIGNAL_SECONDS = 180


def render(
    job_name: str,
    root: str,
    repo: str,
    cpus_per_task: int = 2,
    mem: str = "",
    time: str = "",
    gres: str = "",
    partition: str = "",
    setup: str | None = None,
    signal_seconds: int = DEFAULT_SIGNAL_SECONDS,
) -> str:
    """The job script text; sbatch options not covered here go on launch.py's --sargs.
    `signal_seconds` > 0 asks Slurm for SIGTERM that long before the time limit."""
    lines = [f"#SBATCH --cpus-per-task={int(cpus_per_task)}"]
    if signal_seconds > 0:
        lines.append(f"#SBATCH --signal=B:TERM@{int(signal_seconds)}")
    for option, value in (("mem", mem), ("time", time), ("gres", gres), ("partition", partition)):
        if value:
            lines.append(f"#SBATCH --{option}={value}")
    return TEMPLATE.format(
        job_name=job_name,
        root=root,
        root_quoted=shlex.quote(root),
        repo_quoted=shlex.quote(repo),
        resources="\n".join(lines),
        setup=SETUP if setup is None else setup,
    )
