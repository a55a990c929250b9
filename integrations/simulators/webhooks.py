"""Signed webhook delivery from a simulator to the hub.

Every change a simulator makes can be POSTed to one target URL as JSON::

    {"id": "<event id>", "object": "event", "type": "invoice.paid", "created": <unix>,
     "system": "erp", "data": {"object": {...}, "previous_attributes": {...}}}

signed in the header ``X-Concord-Signature: t=<unix>,v1=<hex>`` where ``hex`` is
HMAC-SHA256 with the shared secret over ``f"{t}.{body}"`` (the raw body bytes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Concord-Signature"
EVENT_ID_HEADER = "X-Concord-Event-Id"
MAX_ATTEMPTS = 3
TIMEOUT = 5.0
MAX_QUEUE = 10_000


def sign(secret: str | bytes, timestamp: int | str, body: bytes | str) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` with ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(key, f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes | str, timestamp: int | None = None) -> str:
    """The ``X-Concord-Signature`` value for ``body`` (now, unless ``timestamp`` is given)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={sign(secret, t, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes | str,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    if not header:
        return False
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isdigit() or not candidates:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


class WebhookSender:
    """A background thread that POSTs queued events, retrying a few times with backoff."""

    def __init__(
        self,
        system: str,
        *,
        on_result: Callable[[str], None] | None = None,
        copies: Callable[[], int] | None = None,
    ) -> None:
        self.system = system
        self.url: str | None = None
        self.secret: str = ""
        self.log: deque[dict[str, Any]] = deque(maxlen=500)
        self._on_result = on_result or (lambda what: None)
        self._copies = copies or (lambda: 1)
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=MAX_QUEUE)
        self._stop = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def configure(self, url: str | None, secret: str | None = None) -> None:
        """Target and secret; ``{system}`` in the URL becomes this system's name."""
        with self._lock:
            self.url = url.replace("{system}", self.system) if url else None
            self.secret = secret or ""

    def enqueue(self, payload: dict[str, Any]) -> None:
        if not self.url:
            return
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            self._queue.put_nowait((str(payload.get("id", "")), body))
        except queue.Full:
            logger.warning("%s simulator: webhook queue full, event dropped", self.system)
            self._on_result("dropped")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"sim-{self.system}-webhooks", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was delivered or given up; True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._queue.empty() and self._busy == 0:
                    return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event_id, body = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            with self._lock:
                self._busy += 1
                url, secret = self.url, self.secret
            try:
                if url:
                    for _ in range(self._copies()):
                        self._deliver(url, secret, event_id, body)
            finally:
                with self._lock:
                    self._busy -= 1

    def _deliver(self, url: str, secret: str, event_id: str, body: bytes) -> None:
        status: int | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self._on_result("attempts")
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": f"Concord-Simulator/{self.system}",
                    SIGNATURE_HEADER: signature_header(secret, body),
                    EVENT_ID_HEADER: event_id,
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError) as exc:
                status = None
                logger.debug("webhook to %s failed: %s", url, exc)
            if status is not None and 200 <= status < 300:
                break
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                break  # the receiver refused it; retrying will not help
            if attempt < MAX_ATTEMPTS and self._stop.wait(0.2 * 2 ** (attempt - 1)):
                break
        ok = status is not None and 200 <= status < 300
        self._on_result("delivered" if ok else "failed")
        self.log.append({"event_id": event_id, "status": status, "attempts": attempt, "ok": ok})
