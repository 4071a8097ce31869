"""Progress of long work: "k of N, time left", for fits, sweeps and benchmarks."""

import time


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts done units of `total` and estimates the time left from the rate so far.

    The rate is measured from the first update on (`start` marks the clock), so that
    one-off set-up (tracing, compilation) before it does not distort the estimate.
    """

    def __init__(self, total: int, done: int = 0):
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}.")
        self.total, self.done = int(total), int(done)
        self._t0, self._done0 = time.perf_counter(), int(done)

    def start(self, done: int | None = None) -> None:
        """(Re)starts the clock, e.g. after the first, compiling chunk of steps."""
        self._t0 = time.perf_counter()
        self._done0 = self.done if done is None else int(done)
        if done is not None:
            self.done = int(done)

    def update(self, done: int) -> None:
        self.done = int(done)

    def seconds_left(self) -> float | None:
        elapsed, progressed = time.perf_counter() - self._t0, self.done - self._done0
        if progressed <= 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / progressed

    def __str__(self) -> str:
        left = self.seconds_left()
        eta = f", {format_seconds(left)} left" if left is not None else ""
        return f"{self.done} of {self.total}{eta}"
