"""The send loop's pacing, on a fake clock: no database."""
import threading
import time

from odoo.tests import tagged
from odoo.tests.common import BaseCase

from ..tools.throttle import PairSpacing, Throttle


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _max_in_any_second(times):
    times = sorted(times)
    return max(sum(1 for other in times if start <= other < start + 1.0) for start in times)


@tagged("post_install", "-at_install")
class TestPacing(BaseCase):
    """Seen by Odoo's own test runner and by pytest alike."""

    def test_throttle_spaces_calls_evenly_at_the_rate(self):
        clock = FakeClock()
        throttle = Throttle(80, clock=clock, sleep=clock.sleep)
        start = clock.now
        for _ in range(800):
            throttle.wait()
        assert abs((clock.now - start) - 799 / 80) < 1e-6  # 800 calls span 799 intervals: exactly 80/s

    def test_throttle_catches_up_after_stalls_without_exceeding_the_rate(self):
        """The send loop stalls at every batch commit; the rate must still hold on average."""
        clock = FakeClock()
        throttle = Throttle(80, clock=clock, sleep=clock.sleep)
        start, times = clock.now, []
        for index in range(800):
            throttle.wait()
            times.append(clock.now)
            clock.now += 0.002  # the send itself
            if index % 50 == 49:
                clock.now += 0.05  # the batch commit
        rate = 800 / (times[-1] - start)
        assert 79.0 <= rate <= 80.5, rate
        assert _max_in_any_second(times) <= 80

    def test_throttle_banks_at_most_one_second_after_idling(self):
        clock = FakeClock()
        throttle = Throttle(10, clock=clock, sleep=clock.sleep)
        throttle.wait()
        clock.now += 60  # idle for a minute
        times = []
        for _ in range(30):
            throttle.wait()
            times.append(clock.now)
        assert _max_in_any_second(times) <= 10
        assert times[-1] - times[0] >= 1.9  # 30 calls at 10/s need about 2 s even with one second banked

    def test_throttle_window_longer_than_a_second_keeps_room_for_arrival_jitter(self):
        """With a 1.02 s window, calls delayed on their way by up to 20 ms still never arrive more than
        ``rate`` in one second, at a cost of about 2% of the rate."""
        clock = FakeClock()
        throttle = Throttle(100, window=1.02, clock=clock, sleep=clock.sleep)
        left, arrived = [], []
        for index in range(1000):
            throttle.wait()
            left.append(clock.now)
            arrived.append(clock.now + (0.02 if index % 7 == 0 else 0.0))  # some calls held back on the way
        assert _max_in_any_second(arrived) <= 100
        assert 97 <= 999 / (left[-1] - left[0]) <= 100

    def test_throttle_lets_concurrent_callers_through_one_after_another(self):
        throttle = Throttle(200)
        times = []

        def caller():
            for _ in range(20):
                throttle.wait()
                times.append(time.monotonic())

        threads = [threading.Thread(target=caller) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        times.sort()
        assert len(times) == 60
        assert _max_in_any_second(times) <= 200
        assert times[-1] - times[0] >= 59 / 200 - 0.01  # paced as one stream, not three

    def test_pair_spacing(self):
        clock = FakeClock()
        pairs = PairSpacing(6, clock=clock)
        assert pairs.wait_time("34600000001") == 0.0
        pairs.record("34600000001")
        clock.now += 2
        assert abs(pairs.wait_time("34600000001") - 4) < 1e-9
        assert pairs.wait_time("34600000002") == 0.0
        pairs.seed("34600000002", seconds_ago=5)
        assert abs(pairs.wait_time("34600000002") - 1) < 1e-9

    def test_pair_spacing_lets_a_short_burst_go_then_waits_its_turn(self):
        clock = FakeClock()
        pairs = PairSpacing(6, burst=5, clock=clock)
        for _photo in range(5):  # an agent's five photos of a flat
            assert pairs.wait_time("34600000001") == 0.0
            pairs.record("34600000001")
        assert abs(pairs.wait_time("34600000001") - 6) < 1e-9, "the sixth waits for the bucket"
        clock.now += 6
        assert pairs.wait_time("34600000001") == 0.0
        pairs.exhaust("34600000002")  # Meta answered 131056 for this one
        assert abs(pairs.wait_time("34600000002") - 6) < 1e-9

    def test_pair_spacing_seeded_from_past_sends(self):
        clock = FakeClock()
        pairs = PairSpacing(6, burst=3, clock=clock)
        for seconds_ago in (5, 4, 3):  # three sends in the last seconds, oldest first
            pairs.seed("34600000003", seconds_ago)
        assert 0 < pairs.wait_time("34600000003") <= 6
