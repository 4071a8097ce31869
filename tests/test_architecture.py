"""The layering of docs/architecture.md, checked: imports point one way, registries are
complete, and each shared mechanism lives in one place."""

import ast
import os

import pytest

from tests.helpers import ROOT

# What each library package may import from the project (besides itself). Scripts at the
# top level (train.py, ...) may import any package; no package imports a script.
ALLOWED = {
    "configs": set(),
    "common": set(),
    "models": {"common"},
    "coding": {"common", "models"},
    "bench": {"common", "coding"},
    "pipelines": {"common", "models", "coding"},
}
SCRIPTS = {
    os.path.splitext(f)[0] for f in os.listdir(ROOT) if f.endswith(".py") and f != "setup.py"
}


def _project_imports(path: str) -> set[tuple[str, int]]:
    """(top-level project module, line) of every import in the file, nested ones too."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in ALLOWED or top in SCRIPTS:
                found.add((top, node.lineno))
    return found


def _library_files():
    for package in ALLOWED:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    yield package, os.path.join(directory, name)


def test_imports_point_one_way():
    wrong = []
    for package, path in _library_files():
        for top, line in sorted(_project_imports(path)):
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{os.path.relpath(path, ROOT)}:{line} imports {top}")
    assert not wrong, "imports against the layering (docs/architecture.md):\n" + "\n".join(wrong)


def test_the_check_sees_nested_and_dotted_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\ndef f():\n    from pipelines.evaluate import x\nimport coding.c3\n")
    assert _project_imports(str(path)) == {("pipelines", 3), ("coding", 4)}


def test_every_model_family_has_a_training_pipeline_and_every_codec_an_id():
    from coding import container
    from models import registry
    from pipelines.registry import pipeline_for

    assert set(registry.names()) >= {"c3", "bls2017", "mbt2018_mean", "jpegl"}
    for name in registry.names():
        assert callable(pipeline_for(name))
        assert name in container.CODEC_IDS


def test_a_model_name_is_registered_once():
    from models import registry

    with pytest.raises(ValueError, match="registered twice"):
        registry.register_model("c3", family="per_image")(lambda config: None)


def test_unknown_models_are_a_config_error():
    from common.errors import ConfigError
    from pipelines.registry import pipeline_for

    with pytest.raises(ConfigError, match="unknown model 'bogus'; known: c3"):
        pipeline_for("bogus")


def test_every_codec_speaks_the_one_interface():
    from bench.codecs import CODECS
    from coding.amortised.codec import AmortisedCodec
    from coding.interface import Codec
    from pipelines.per_image import C3Codec

    for cls in (AmortisedCodec, C3Codec, type(CODECS["jpeg"].at(50))):
        assert issubclass(cls, Codec)
    jpeg = CODECS["jpeg"].at(90)
    assert jpeg.name == "jpeg" and "90" in jpeg.description


def test_the_error_family():
    from common import errors

    for name in ("ConfigError", "DatasetError", "ImageError", "CodecError", "FitError"):
        assert issubclass(getattr(errors, name), errors.ZooError)
    assert issubclass(errors.BitstreamError, errors.CodecError)
    assert errors.FitError("NaN").report("train.py") == "train.py: error: fit failed: NaN"
    assert errors.FitError.exit_code == 1 and errors.ConfigError.exit_code == 2


def test_progress_counts_and_estimates_the_time_left(monkeypatch):
    from common import progress

    clock = iter([0.0, 10.0, 10.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    p = progress.Progress(total=100, done=20)  # t = 0
    p.update(40)
    assert p.seconds_left() == pytest.approx(30.0)  # 20 units in 10 s, 60 to go
    assert str(p) == "40 of 100, 0:30 left"
    assert progress.format_seconds(3725) == "1:02:05"
