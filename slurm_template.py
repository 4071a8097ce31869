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
EXPERIMENT={root_quoted}/"$SLURM_ARRAY_JOB_ID"
COMMAND=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$EXPERIMENT/units.txt")
RESTART=${{SLURM_RESTART_COUNT:-0}}
echo "[$(date -Is)] $(hostname) task $SLURM_ARRAY_TASK_ID, restart $RESTART: $COMMAND"
cd {repo_quoted}
# exec: Python becomes the job's main process and receives Slurm's SIGTERM before a
# preemption or requeue; it saves a checkpoint and exits, and the requeued task resumes.
exec bash -c "$COMMAND"
"""


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
) -> str:
    """The job script text; sbatch options not covered here go on launch.py's --sargs."""
    lines = [f"#SBATCH --cpus-per-task={int(cpus_per_task)}"]
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
