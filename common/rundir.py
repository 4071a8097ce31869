"""Run directories: `<root>/<xid>/wid=<wid>-<config name>-<k=v,...>/`.

Each holds config.json, run_info.json (command line, git revision, host, Slurm ids),
checkpoints, TensorBoard events, per-image results and reconstructions.
"""

import datetime
import os
import socket
import subprocess
import sys

from common.config import config_to_dict
from common.files import atomic_write_json


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def work_unit_name(wid: int, config_name: str, overrides: dict) -> str:
    """wid=<wid>-<name>-<k=v,...> with the last component of each dotted key."""
    parts = ",".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in sorted(overrides.items()))
    return f"wid={wid}-{config_name}" + (f"-{parts}" if parts else "")


def default_workdir(config_name: str, wid: int | None, overrides: dict) -> str:
    xid = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if wid is None:
        return os.path.join("runs", f"{config_name}-{xid}")
    return os.path.join("runs", xid, work_unit_name(wid, config_name, overrides))


def git_revision() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def prepare_workdir(workdir: str, config) -> None:
    """Creates the run directory and writes config.json and run_info.json."""
    os.makedirs(workdir, exist_ok=True)
    atomic_write_json(os.path.join(workdir, "config.json"), config_to_dict(config))
    slurm = {k: v for k, v in os.environ.items() if k.startswith("SLURM_") and "ID" in k}
    atomic_write_json(
        os.path.join(workdir, "run_info.json"),
        {
            "argv": sys.argv,
            "git_revision": git_revision(),
            "host": socket.gethostname(),
            "slurm": slurm,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        },
    )


def resolve_run(
    config,
    config_path: str,
    hid: int | None,
    workdir: str | None,
    root: str | None,
    argv: list[str],
    extra: dict | None = None,
) -> tuple[str, dict]:
    """Applies sweep entry `hid` to `config` (command-line overrides win) and returns
    (run directory, the applied overrides). The directory is `workdir` if given, else
    ROOT/wid=<hid>-<name>-<k=v,...>, else a fresh one under ./runs. `extra` adds
    name components (not config fields)."""
    from common.config import apply_sweep_entry, cli_overridden_keys, sweep_entry

    overrides = {}
    if hid is not None:
        overrides = sweep_entry(config_path, hid)
        apply_sweep_entry(config, overrides, keep=cli_overridden_keys(argv))
    named = {**overrides, **(extra or {})}
    if not workdir and root:
        workdir = os.path.join(root, work_unit_name(hid or 0, config.name, named))
    return workdir or default_workdir(config.name, hid, named), overrides
