"""The one epilogue of every script: how user mistakes, preemption and bugs end a run.

    def main(argv): ...                     # an absl script (train.py, codec.py, ...)
    if __name__ == "__main__":
        run_main(main, "train.py", needs_config=True)

    def main(argv=None) -> int:             # an argparse module (python -m bench.plot)
        args = parser.parse_args(argv)
        return exit_code(lambda: work(args), "bench.plot")

- A `ZooError` (a bad config, image, file, dataset; a fit that failed) ends as one line
  `<script>: error: <message>` on stderr and the error's exit code (2, or 1 for a fit or
  training that failed), never a traceback.
- `preemption.Preempted` (SIGTERM after a checkpoint was saved) logs a warning and exits
  143, as a process killed by SIGTERM would, so Slurm requeues and a rerun resumes.
- Anything else is a bug and keeps its traceback.
"""

import functools
import os
import sys

from common import preemption
from common.config import check_config_path, parse_flags
from common.errors import ZooError

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM
# Set by the launcher for each work unit (common/launcher.py): a file to write when the
# script ends successfully, so that `launch.py --resubmit` finds the unfinished units.
UNIT_DONE_ENV = "LZ_UNIT_DONE"


def mark_unit_done() -> None:
    path = os.environ.get(UNIT_DONE_ENV)
    if path:
        import datetime

        from common.files import atomic_write_bytes

        atomic_write_bytes(path, (datetime.datetime.now().isoformat() + "\n").encode())


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter (CUDA probes) unless the user asked for it.

    Takes effect only before TensorFlow is imported: scripts call it first. Errors that
    matter reach the user as Python exceptions, which the scripts report.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def exit_code(work, script: str) -> int:
    """Runs `work()`; returns 0, or reports a ZooError / preemption and returns its code."""
    try:
        work()
    except ZooError as e:
        print(e.report(script), file=sys.stderr)
        return e.exit_code
    except preemption.Preempted as e:
        from absl import logging

        logging.warning("%s", e)
        return PREEMPTED_EXIT_CODE
    return 0


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort")


def print_help(script: str) -> None:
    """The script's docstring and its own flags (absl's key flags of the main module)."""
    from absl import flags

    doc = (sys.modules["__main__"].__doc__ or "").strip()
    print(f"{script}: {doc}\n" if doc else script)
    print("Flags:" + flags.FLAGS.main_module_help().split(":", 1)[-1])
    print("\n(--helpfull lists absl's own flags too.)")


@functools.cache  # once per process: each check traces a function
def check_eager_context() -> None:
    """Raises RuntimeError unless tf.function traces see TensorFlow 2's eager context
    outside them (see `run_main`): a process in TF1's state would write and read
    files that differ from everyone else's."""
    import tensorflow as tf

    @tf.function(autograph=False)
    def elementwise_equal(x):
        return x == 0

    if not bool(elementwise_equal(tf.constant(0))):
        raise RuntimeError(
            "TensorFlow's eager context is broken in this process (was TensorFlow first "
            "imported inside absl's app.run?): import tensorflow before app.run."
        )


def run_main(main, script: str, needs_config: bool = False, tensorflow: bool = True) -> None:
    """Runs an absl `main` with the project's flag parsing and error epilogue; exits.

    `tensorflow=False` for a script that never needs TensorFlow (launch.py): it then
    starts in a fraction of a second.

    `--help` prints the script's docstring and flags and exits 0 (absl's exits 1)."""
    from absl import app, flags

    quiet_tensorflow()
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        print_help(script)
        sys.exit(0)
    if needs_config:
        flags.mark_flag_as_required("config")
    if tensorflow:
        # TensorFlow must be imported before absl's app.run, never first inside `main`:
        # imported there, TF 2.14 builds its eager context without the eager entry of
        # its context stack, and every tf.function is then traced as if under TF1's
        # graph mode: `tensor == 0` compares Python objects (False) instead of values,
        # Keras and tf.init_scope take graph paths (tensorflow/tensorflow#55889 is the
        # same cause). A C3 decoder in train.py read every escaped value with the wrong
        # sign because of it. `check_eager_context` below keeps it from coming back.
        import tensorflow  # noqa: F401

        check_eager_context()

    def work():
        check_config_path(sys.argv)
        try:
            app.run(main, flags_parser=parse_flags)
        except SystemExit as e:  # absl ends every run with sys.exit(main's return value)
            if e.code in (None, 0):
                mark_unit_done()
            raise

    sys.exit(exit_code(work, script))
