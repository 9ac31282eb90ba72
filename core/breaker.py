"""A circuit breaker for the image service: after repeated outages, stop calling it for a while."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; each reopening doubles the cool-down, up to a cap.

    While open, queued work waits instead of hammering a service that is down; the first call after
    the cool-down is the probe that closes it again (or reopens it for longer).
    """

    def __init__(self, *, threshold: int = 3, cooldown_s: float = 30.0, max_cooldown_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._failures = 0
        self._cooldown_s = cooldown_s
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def remaining_s(self) -> float:
        return max(0.0, self._open_until - self._clock())

    def record_success(self) -> None:
        self._failures = 0
        self._cooldown_s = self.base_cooldown_s
        self._open_until = 0.0

    def record_failure(self) -> float:
        """Count a failure; returns how long callers should now wait before trying again."""
        self._failures += 1
        if self._failures >= self.threshold:
            self._open_until = self._clock() + self._cooldown_s
            self._cooldown_s = min(self._cooldown_s * 2, self.max_cooldown_s)
            return self.remaining_s()
        return min(self.base_cooldown_s, 5.0 * self._failures)
