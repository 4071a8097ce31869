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
    """absl's flag parsing, with bad flags and --config overrides as ConfigErrors that say
    what is wrong (`explain_overrides`)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        raise ConfigError(explain_overrides(argv) or f"invalid flag: {e}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(explain_overrides(argv) or f"invalid config override: {e}") from None


def _dotted_fields(node, prefix: str = "") -> dict:
    """Every leaf field of a ConfigDict by its dotted name, with its default value."""
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            out.update(_dotted_fields(value, name + "."))
        else:
            out[name] = value
    return out


def _parses_as(text: str, default) -> bool:
    """Whether ml_collections can read `text` as a value of `default`'s type."""
    import ast

    if default is None or isinstance(default, str):
        return True
    if isinstance(default, bool):
        return text.lower() in ("true", "false", "1", "0")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return True


def explain_overrides(argv: list[str]) -> str | None:
    """What is wrong with the --config.KEY=VALUE overrides of `argv`, in one sentence: an
    unknown field (with the nearest valid names) or a value of the wrong type (with the
    expected type); None if they look fine or the config cannot be read."""
    import difflib

    path = config_path_from_argv(argv)
    if path is None or not os.path.isfile(path):
        return None
    try:
        fields = _dotted_fields(load_module(path).get_config())
    except Exception:  # the config itself is broken: absl's message is the better one
        return None
    for arg in argv:
        match = re.match(r"^--config\.([\w.]+)(?:=(.*))?$", arg)
        if not match:
            continue
        key, text = match.group(1), match.group(2)
        if key not in fields:
            nearest = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
            section = key.rsplit(".", 1)[0] if "." in key else ""
            siblings = [f for f in fields if section and f.startswith(section + ".")]
            hint = nearest or siblings[:6]
            return f"--config.{key}: {path} has no field {key!r}" + (
                f"; did you mean {', '.join(hint)}?" if hint else "."
            )
        default = fields[key]
        if text is not None and not _parses_as(text, default):
            kinds = {bool: "a boolean", int: "an integer", float: "a number", tuple: "a tuple"}
            kind = kinds.get(type(default), f"a {type(default).__name__}")
            return f"--config.{key}={text}: {key} is {kind} (default {default!r}); {text!r} is not."
    return None


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
