"""Pacing for the send loop. Pure: clock and sleep are injectable."""
import time


class Throttle:
    """Let at most ``rate`` calls per second through, evenly spaced (no bursts above the rate)."""

    def __init__(self, rate, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next_at = clock()

    def wait(self):
        """Block until the next call may go; returns the seconds slept."""
        now = self._clock()
        slept = 0.0
        if self._next_at > now:
            slept = self._next_at - now
            self._sleep(slept)
            now = self._next_at
        self._next_at = max(now, self._next_at) + self.interval
        return slept


class PairSpacing:
    """Meta's pair rate limit: about one message every ``seconds`` to the same user."""

    def __init__(self, seconds, clock=time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._last = {}

    def seed(self, recipient, seconds_ago):
        """Remember a send made before this loop started (e.g. read from the database)."""
        self._last[recipient] = self._clock() - seconds_ago

    def wait_time(self, recipient):
        """Seconds until ``recipient`` may receive again (0 when it may now)."""
        last = self._last.get(recipient)
        return 0.0 if last is None else max(0.0, last + self.seconds - self._clock())

    def record(self, recipient):
        self._last[recipient] = self._clock()
