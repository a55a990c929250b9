"""Fault knobs and request statistics of one simulator.

Knobs are set in Python (``sim.faults.set(fail_next_n_with_429=2)``) or over HTTP
(``POST /_sim/faults``). Random knobs draw from one ``random.Random(seed)``, so a run
with the same seed and the same requests injects the same faults.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .world import Record

MAX_DELAY = 120.0  # seconds; a hang is always bounded

DEFAULTS: dict[str, Any] = {
    "rate_limit": 0,  # requests allowed per window; 0 = no limit
    "rate_limit_window": 1.0,  # seconds
    "retry_after": 1,  # seconds sent with fail_next_n_with_429
    "fail_next_n_with_429": 0,
    "fail_next_n_with_500": 0,
    "error_rate": 0.0,  # probability of a 5xx per request
    "error_status": 500,  # 500, 502, 503 or 504
    "timeout_next_n": 0,  # hang the next n requests for `delay` seconds, then answer
    "delay": 5.0,
    "slow_ms": 0,  # added to every request
    "duplicate_rate": 0.0,  # probability that a page repeats records of the previous page
    "out_of_order": 0.0,  # probability that a page also carries an older version of a record
    "webhook_duplicate_rate": 0.0,  # probability that a webhook is delivered twice
    "incremental_lag": 0.0,  # seconds: Zendesk leaves out changes younger than this (60 live)
    "paths": [],  # path prefixes the request knobs apply to; empty = every API path
    "seed": 0,
}
_TYPES: dict[str, type] = {k: type(v) for k, v in DEFAULTS.items()}


@dataclass
class Decision:
    """What to do to one request before it is answered."""

    status: int | None = None  # answer with this error instead
    retry_after: int | None = None
    delay: float = 0.0  # seconds to wait first
    hang: bool = False  # the delay is a timeout fault


class Faults:
    """Thread-safe knobs. Unknown names or wrong types raise ValueError."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._rng = random.Random(seed)
        self.injected: dict[str, int] = {}
        self._window_start: float | None = None
        self._window_count = 0
        self.reset(seed=seed)

    def reset(self, *, seed: int | None = None) -> None:
        """All knobs back to their defaults (no faults)."""
        with self._lock:
            keep_seed = self._values.get("seed", 0) if seed is None else seed
            self._values = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
            self._values["seed"] = keep_seed
            self._rng = random.Random(keep_seed)
            self.injected = {}
            self._window_start, self._window_count = None, 0

    def set(self, **knobs: Any) -> dict[str, Any]:
        """Change some knobs (the others keep their values); returns all knobs."""
        clean = {name: self._coerce(name, value) for name, value in knobs.items()}
        with self._lock:
            self._values.update(clean)
            if "seed" in clean:
                self._rng = random.Random(clean["seed"])
            if "rate_limit" in clean or "rate_limit_window" in clean:
                self._window_start, self._window_count = None, 0
        return self.snapshot()

    def get(self, name: str) -> Any:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            values = dict(self._values)
            values["paths"] = list(values["paths"])
            values["injected"] = dict(self.injected)
            return values

    @staticmethod
    def _coerce(name: str, value: Any) -> Any:
        if name not in DEFAULTS:
            raise ValueError(f"unknown fault knob {name!r}; known: {', '.join(DEFAULTS)}")
        kind = _TYPES[name]
        try:
            if kind is list:
                if isinstance(value, str):
                    value = [value]
                return [str(v) for v in value]
            if kind is int:
                value = int(value)
            elif kind is float:
                value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"fault knob {name} wants {kind.__name__}, got {value!r}") from None
        if isinstance(value, int | float) and value < 0:
            raise ValueError(f"fault knob {name} must not be negative")
        if (name.endswith("_rate") or name == "out_of_order") and value > 1:
            raise ValueError(f"fault knob {name} is a probability (0..1)")
        if name == "error_status" and not 500 <= value <= 599:
            raise ValueError("error_status must be a 5xx status")
        if name == "delay":
            value = min(value, MAX_DELAY)
        return value

    def _count(self, what: str, n: int = 1) -> None:
        self.injected[what] = self.injected.get(what, 0) + n

    # -- request faults -----------------------------------------------------------------

    def check(self, path: str) -> Decision:
        """Decide the fate of one API request (admin paths never come here)."""
        with self._lock:
            v = self._values
            if v["paths"] and not any(path.startswith(p) for p in v["paths"]):
                return Decision()
            if v["rate_limit"] > 0:
                now = time.monotonic()
                window = max(v["rate_limit_window"], 0.001)
                if self._window_start is None or now - self._window_start >= window:
                    self._window_start, self._window_count = now, 0
                self._window_count += 1
                if self._window_count > v["rate_limit"]:
                    self._count("429")
                    left = self._window_start + window - now
                    return Decision(status=429, retry_after=max(1, math.ceil(left)))
            if v["fail_next_n_with_429"] > 0:
                v["fail_next_n_with_429"] -= 1
                self._count("429")
                return Decision(status=429, retry_after=max(0, int(v["retry_after"])))
            if v["timeout_next_n"] > 0:
                v["timeout_next_n"] -= 1
                self._count("timeout")
                return Decision(delay=v["delay"], hang=True)
            if v["fail_next_n_with_500"] > 0:
                v["fail_next_n_with_500"] -= 1
                self._count("5xx")
                return Decision(status=v["error_status"])
            if v["error_rate"] and self._rng.random() < v["error_rate"]:
                self._count("5xx")
                return Decision(status=v["error_status"])
            return Decision(delay=v["slow_ms"] / 1000)

    # -- page faults --------------------------------------------------------------------

    def page(self, items: list[Record], earlier: list[Record]) -> list[Record]:
        """One page as served: maybe with repeats of the previous page, maybe an old version.

        ``earlier`` are the records right before this page in the same order (what the
        previous page ended with).
        """
        with self._lock:
            v = self._values
            out = list(items)
            if v["duplicate_rate"] and earlier and self._rng.random() < v["duplicate_rate"]:
                k = min(len(earlier), max(1, len(items) // 2), 3)
                out = earlier[-k:] + out
                self._count("duplicates", k)
            if v["out_of_order"] and self._rng.random() < v["out_of_order"]:
                candidates = [r for r in items if r.history] or [r for r in earlier if r.history]
                if candidates:
                    record = candidates[self._rng.randrange(len(candidates))]
                    out.append(record.history[-1])
                    self._count("out_of_order")
            return out

    def webhook_copies(self) -> int:
        with self._lock:
            rate = self._values["webhook_duplicate_rate"]
            if rate and self._rng.random() < rate:
                self._count("webhook_duplicates")
                return 2
            return 1


class Stats:
    """Requests per path and status, and the most recent requests with their times."""

    def __init__(self, keep: int = 2000) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests: dict[str, dict[str, int]] = {}
            self.log: deque[dict[str, Any]] = deque(maxlen=self._keep)
            self.webhooks: dict[str, int] = {"delivered": 0, "failed": 0, "attempts": 0}
            self.total = 0

    def record(self, method: str, path: str, status: int, at: float) -> None:
        key = f"{method} {path}"
        with self._lock:
            per = self.requests.setdefault(key, {})
            per[str(status)] = per.get(str(status), 0) + 1
            self.total += 1
            self.log.append({"t": at, "method": method, "path": path, "status": status})

    def webhook(self, what: str) -> None:
        with self._lock:
            self.webhooks[what] = self.webhooks.get(what, 0) + 1

    def count(
        self, path: str | None = None, status: int | None = None, method: str | None = None
    ) -> int:
        """Requests so far matching a path prefix, status and method."""
        with self._lock:
            return sum(
                1
                for e in self.log
                if (path is None or e["path"].startswith(path))
                and (status is None or e["status"] == status)
                and (method is None or e["method"] == method)
            )

    def times(self, path: str | None = None, status: int | None = None) -> list[float]:
        """Arrival times (time.time()) of matching recent requests, oldest first."""
        with self._lock:
            return [
                e["t"]
                for e in self.log
                if (path is None or e["path"].startswith(path))
                and (status is None or e["status"] == status)
            ]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "requests": {k: dict(v) for k, v in self.requests.items()},
                "recent": list(self.log)[-200:],
                "webhooks": dict(self.webhooks),
            }
