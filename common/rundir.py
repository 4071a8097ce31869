"""Run directories: `<root>/<xid>/wid=<wid>-<config name>-<k=v,...>/`.

Each holds config.json, run_info.json (command line, git revision, host, Slurm ids),
checkpoints, TensorBoard events, per-image results and reconstructions.
"""

import datetime
import json
import os
import socket
import subprocess
import sys

from common.config import config_to_dict
from common.errors import ConfigError
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


def provenance(root: str) -> dict:
    """What a benchmark JSON records about the code that produced it: the commit, whether
    tracked files other than benchmarks/results/ differed from it (`git_dirty`: then the
    numbers are not that commit's),
    and the command line, relative to the repository `root`."""
    dirty = None
    try:
        out = subprocess.run(
            # Results JSONs aside: a batch of benchmarks rewrites them as it goes.
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "commit": git_revision(),
        "git_dirty": dirty,
        "command": " ".join([os.path.relpath(sys.argv[0], root)] + sys.argv[1:]),
    }


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


def read_run_config(workdir: str):
    """The config a run directory was made with (its config.json), as a ConfigDict."""
    from ml_collections import config_dict

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{workdir}: no config.json (is it a run directory?).")
    with open(path) as f:
        return config_dict.ConfigDict(json.load(f))


class RunFlags:
    """--config, --hid, --workdir, --root and --print_config: the flags of scripts that run
    one work unit of a config's sweep (train.py, itinf.py). Define once per script, at
    import time; `--help` lists them as the script's own."""

    def __init__(self, config_help: str, hid_help: str):
        from absl import flags
        from ml_collections import config_flags

        self._config = config_flags.DEFINE_config_file("config", None, config_help)
        self._hid = flags.DEFINE_integer("hid", None, hid_help)
        self._workdir = flags.DEFINE_string(
            "workdir", None, "Output directory (default: ./runs/...)."
        )
        self._root = flags.DEFINE_string(
            "root", None, "Experiment directory: the output is ROOT/wid=<hid>-<name>-<k=v,...>."
        )
        self._print_config = flags.DEFINE_bool(
            "print_config",
            False,
            "Print the resolved config (after --hid's sweep entry and the overrides), then exit.",
        )
        # Key flags of the script (absl names the main module by sys.argv[0]), so that
        # its --help lists them.
        for name in ("config", "hid", "workdir", "root", "print_config"):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

    def resolve(self, argv: list[str], extra: dict | None = None):
        """Applies sweep entry --hid to the config (command-line overrides win); returns
        (config, output directory). The directory is --workdir if given, else
        ROOT/wid=<hid>-<name>-<k=v,...>, else a fresh one under ./runs. `extra` adds
        name components that are not config fields."""
        from absl import flags

        from common.config import apply_sweep_entry, cli_overridden_keys, sweep_entry

        config, hid = self._config.value, self._hid.value
        overrides = {}
        if hid is not None:
            overrides = sweep_entry(flags.FLAGS["config"].config_filename, hid)
            apply_sweep_entry(config, overrides, keep=cli_overridden_keys(argv))
        if self._print_config.value:
            print(config)
            raise SystemExit(0)
        named = {**overrides, **(extra or {})}
        workdir = self._workdir.value
        if not workdir and self._root.value:
            workdir = os.path.join(self._root.value, work_unit_name(hid or 0, config.name, named))
        return config, workdir or default_workdir(config.name, hid, named)


def training_record(workdir: str) -> dict | None:
    """What a benchmark reports of the run that trained a model: its train_summary.json
    (without the loss history) and, from run_info.json, the training's command and
    commit; None if the run has no summary."""
    path = os.path.join(workdir, "train_summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    record.pop("loss_history", None)
    info_path = os.path.join(workdir, "run_info.json")
    if os.path.isfile(info_path):
        with open(info_path) as f:
            info = json.load(f)
        record["run"] = {k: info.get(k) for k in ("argv", "git_revision", "started")}
    return record
