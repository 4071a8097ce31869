"""The project's exceptions: one family, so every script reports them the same way.

Library code raises the most specific class; `common.cli.run_main` turns any `ZooError`
into one line `<script>: error: <message>` on stderr and the class's exit code. Anything
else (a bug) keeps its traceback.

    ZooError
    +-- ConfigError        a config, flag, sweep or command line that cannot be used
    +-- DatasetError       data that cannot be found, fetched or verified
    +-- ImageError         an image that cannot be read or is not something we code
    +-- CodecError         a codec that cannot code here (missing tool, untrained run)
    |   +-- BitstreamError a file that is not a valid bitstream: what is wrong and where
    +-- EvaluationError    files and originals that cannot be compared
    +-- FitError           a per-image fit that cannot continue (exit code 1)
    +-- TrainingError      amortised training that cannot continue (exit code 1)
    +-- LaunchError        a sweep that cannot be submitted or whose units failed
"""


class ZooError(Exception):
    """An error the user can act on; reported as one line, never a traceback."""

    exit_code = 2
    prefix = ""  # put before the message in the one-line report

    def report(self, script: str) -> str:
        return f"{script}: error: {self.prefix}{self}"


class ConfigError(ZooError, ValueError):
    """A config, flag, sweep or command line that cannot be used."""


class DatasetError(ZooError, RuntimeError):
    """Data that cannot be found, fetched or verified."""


class ImageError(ZooError, ValueError):
    """An image that cannot be read or is not something we code."""


class CodecError(ZooError, RuntimeError):
    """A codec that cannot code here: a missing tool, a run directory without a checkpoint,
    a model that is not a codec, or a tool that failed on an image."""


class BitstreamError(CodecError, ValueError):
    """A file that is not a valid bitstream of this project: what is wrong and where."""


class EvaluationError(ZooError, ValueError):
    """Inputs that cannot be evaluated (no files, no original, size mismatch)."""


class FitError(ZooError, RuntimeError):
    """A per-image fit that cannot continue (e.g. the loss stays NaN after every recovery)."""

    exit_code = 1
    prefix = "fit failed: "


class TrainingError(ZooError, RuntimeError):
    """Training cannot continue (a NaN loss, an undecodable training image)."""

    exit_code = 1


class LaunchError(ZooError, RuntimeError):
    """A sweep that cannot be submitted, or work units that failed."""
