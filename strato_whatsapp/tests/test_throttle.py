"""The send loop's pacing, on a fake clock: no database."""
from ..tools.throttle import PairSpacing, Throttle


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_throttle_spaces_calls_evenly_at_the_rate():
    clock = FakeClock()
    throttle = Throttle(80, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(800):
        throttle.wait()
    assert abs((clock.now - start) - 799 / 80) < 1e-6  # 800 calls span 799 intervals: exactly 80/s


def test_throttle_does_not_bank_idle_time_into_a_burst():
    clock = FakeClock()
    throttle = Throttle(10, clock=clock, sleep=clock.sleep)
    throttle.wait()
    clock.now += 60  # idle for a minute
    slept = [throttle.wait() for _ in range(3)]
    assert slept[0] == 0.0 and slept[1] > 0.09 and slept[2] > 0.09


def test_pair_spacing():
    clock = FakeClock()
    pairs = PairSpacing(6, clock=clock)
    assert pairs.wait_time("34600000001") == 0.0
    pairs.record("34600000001")
    clock.now += 2
    assert abs(pairs.wait_time("34600000001") - 4) < 1e-9
    assert pairs.wait_time("34600000002") == 0.0
    pairs.seed("34600000002", seconds_ago=5)
    assert abs(pairs.wait_time("34600000002") - 1) < 1e-9
