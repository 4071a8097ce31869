"""Graceful stop on SIGTERM: Slurm's warning before preemption, requeue or a time limit.

`install()` replaces the default SIGTERM action (immediate death) by setting a flag; long
loops call `requested()` at safe points (between compiled chunks of fitting steps), save
a checkpoint and raise `Preempted`. The requeued or rerun job resumes from that
checkpoint. The delay between the signal and the stop is at most one chunk
(`fit.log_every` steps): keep it below the cluster's grace time (Slurm's KillWait, 30 s
by default, or the partition's GraceTime).
"""

import signal
import threading

_STOP = threading.Event()


class Preempted(Exception):
    """Raised after the state was saved because a stop was requested."""


def _handler(signum, frame) -> None:
    del signum, frame
    _STOP.set()


def install() -> None:
    signal.signal(signal.SIGTERM, _handler)


def requested() -> bool:
    return _STOP.is_set()
