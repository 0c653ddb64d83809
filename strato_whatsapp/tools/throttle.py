"""Pacing for the send loop. Pure: clock and sleep are injectable."""
import threading
import time
from collections import deque


class Throttle:
    """Let calls through evenly at ``rate`` per second, and never more than ``rate`` in any ``window``.

    Slots missed during a short stall (a batch commit) are caught up, so the average holds at the rate;
    at most one second of them is banked, and the sliding window caps any catch-up burst. A window a
    little longer than a second leaves room for the jitter between letting a call through and its
    arrival at the server, so the server never counts more than ``rate`` in one second. Thread-safe:
    concurrent callers are let through one after another.
    """

    def __init__(self, rate, window=1.0, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        if window < 1.0:
            raise ValueError("the window must be at least one second")
        self.rate = rate
        self.interval = 1.0 / rate
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._next_at = clock()
        self._recent = deque()  # times of the calls let through during the last window
        self._lock = threading.Lock()

    def wait(self):
        """Block until the next call may go; returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._next_at = max(self._next_at, now - 1.0)
            self._forget_before(now - self.window)
            delay = self._next_at - now
            if len(self._recent) >= self.rate:
                delay = max(delay, self._recent[0] + self.window - now)
            slept = 0.0
            if delay > 0:
                self._sleep(delay)
                slept = delay
                now += delay
                self._forget_before(now - self.window)
            self._recent.append(now)
            self._next_at += self.interval
            return slept

    def _forget_before(self, moment):
        while self._recent and self._recent[0] <= moment:
            self._recent.popleft()


class PairSpacing:
    """Meta's pair rate limit, per recipient: about one message every ``seconds``, with short bursts
    allowed that borrow from the time to come (a token bucket of ``burst`` messages refilled by one every
    ``seconds``). An agent's five photos of a flat go at once; a sixth right after waits its turn."""

    def __init__(self, seconds, burst=1, clock=time.monotonic):
        self.seconds = seconds
        self.burst = burst
        self._clock = clock
        self._buckets = {}  # recipient -> (tokens, at)

    def _tokens(self, recipient, now):
        tokens, at = self._buckets.get(recipient, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) / self.seconds)

    def seed(self, recipient, seconds_ago):
        """Remember a send made before this loop started (e.g. read from the database); seed a
        recipient's sends oldest first."""
        at = self._clock() - seconds_ago
        self._buckets[recipient] = (self._tokens(recipient, at) - 1, at)

    def wait_time(self, recipient):
        """Seconds until ``recipient`` may receive again (0 when it may now)."""
        tokens = self._tokens(recipient, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) * self.seconds

    def record(self, recipient):
        now = self._clock()
        self._buckets[recipient] = (self._tokens(recipient, now) - 1, now)

    def exhaust(self, recipient):
        """Meta said this pair is over its limit (131056): nothing more to it until a token is back."""
        self._buckets[recipient] = (0.0, self._clock())
