"""Configs and sweeps: ml_collections configs with `get_config()` and `get_hyper()`.

A sweep is a list of flat dicts with dotted keys; `--hid N` applies entry N. Values given
on the command line (`--config.model.lmbda=...`) win over the sweep entry.
"""

import hashlib
import importlib.util
import json
import os
import re

from common.errors import ConfigError


def config_path_from_argv(argv: list[str]) -> str | None:
    """The value of --config (`--config PATH` or `--config=PATH`; the last one wins)."""
    path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return path


def check_config_path(argv: list[str]) -> None:
    """Fails with a ConfigError when --config names a file that does not exist."""
    path = config_path_from_argv(argv)
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist.")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with bad flags and --config overrides as ConfigErrors."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        raise ConfigError(f"invalid flag: {e}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"invalid config override: {e}") from None


def load_module(path: str):
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist.")
    spec = importlib.util.spec_from_file_location(
        "config_" + os.path.splitext(os.path.basename(path))[0], path
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_sweep(path: str) -> list[dict]:
    module = load_module(path)
    if not hasattr(module, "get_hyper"):
        raise ConfigError(f"{path} has no get_hyper(): it defines no sweep.")
    sweep = list(module.get_hyper())
    if not sweep:
        raise ConfigError(f"{path}: get_hyper() returned an empty sweep.")
    return sweep


def sweep_entry(path: str, hid: int) -> dict:
    sweep = load_sweep(path)
    if not 0 <= hid < len(sweep):
        raise ConfigError(f"--hid {hid} is out of range: {path} has {len(sweep)} work units.")
    return sweep[hid]


def set_dotted(config, key: str, value) -> None:
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in node:
            raise ConfigError(f"sweep key {key!r} is not in the config.")
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(f"sweep key {key!r} is not in the config.")
    setattr(node, parts[-1], value)


def cli_overridden_keys(argv: list[str]) -> set[str]:
    """Dotted config keys given on the command line as --config.KEY=VALUE or --config.KEY V."""
    keys = set()
    for arg in argv:
        match = re.match(r"^--config\.([\w.]+)", arg)
        if match:
            keys.add(match.group(1))
    return keys


def apply_sweep_entry(config, entry: dict, keep: set[str] = frozenset()) -> None:
    """Sets each dotted key of `entry`, except keys in `keep` (set on the command line)."""
    for key, value in entry.items():
        if key not in keep:
            set_dotted(config, key, value)


def config_to_dict(config) -> dict:
    """The config as plain JSON-compatible data (what config.json holds)."""
    return json.loads(config.to_json_best_effort())


def config_hash(config) -> str:
    """A short, stable hash of the config's content."""
    text = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
