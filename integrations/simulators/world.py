"""The in-memory store behind one simulator: records per object type, a change feed, a clock.

A World knows nothing about HTTP. Each record keeps its vendor-shaped fields in ``data``
(keys starting with ``_`` are internal and never served), its own ``created`` and
``updated`` times in epoch milliseconds, a soft-delete flag, its associations, and a few
older versions (served by the ``out_of_order`` fault knob). Every change after the world
is built bumps ``updated`` on a clock that is monotonic per world and appends events.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

HISTORY_DEPTH = 5  # older versions kept per record
MAX_EVENTS = 50_000  # oldest events are dropped beyond this (Stripe keeps 30 days)
MAX_TICK = 1_000  # changes one tick() may make


@dataclass
class Record:
    type: str
    id: str
    data: dict[str, Any]
    created: int  # epoch ms
    updated: int  # epoch ms
    deleted: bool = False
    deleted_at: int | None = None
    assoc: dict[str, list[str]] = field(default_factory=dict)
    history: list[Record] = field(default_factory=list)  # older versions, oldest first
    version: int = 1

    def snapshot(self) -> Record:
        # data and assoc are replaced on every write, never mutated, so sharing them is safe.
        return replace(self, history=list(self.history))

    @property
    def previous(self) -> Record | None:
        """The version before this one, if kept."""
        return self.history[-1] if self.history else None


@dataclass(frozen=True)
class Event:
    seq: int  # position in this world's feed
    id: str
    type: str
    created: int  # epoch ms
    record: Record  # the record as it was right after the change
    previous: dict[str, Any] | None = None  # changed fields' old values (updates only)


def to_ms(value: Any) -> int:
    """Epoch milliseconds from a datetime, an ISO 8601 string, or unix seconds or ms."""
    if value is None or isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float):
        try:
            return int(value * 1000) if abs(value) < 1e11 else int(value)
        except (OverflowError, ValueError):
            raise ValueError(f"not a time: {value!r}") from None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return to_ms(number)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return to_ms(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"not a time: {value!r}") from None


def iso_ms(ms: int) -> str:
    """``2024-05-01T10:11:12.345Z`` (HubSpot)."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def iso_s(ms: int) -> str:
    """``2024-05-01T10:11:12Z`` (Zendesk)."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    """Records of one system, thread-safe behind ``lock`` (re-entrant).

    Build one with :meth:`from_rows` (plain dicts per object type) or :meth:`generate`
    (a small deterministic population). Reads return snapshots; writes go through
    :meth:`create`, :meth:`update` and :meth:`delete`, which emit events to subscribers.
    """

    def __init__(
        self, system: str, *, seed: int = 0, clock: Callable[[], float] | None = None
    ) -> None:
        from .systems import get_spec

        self.spec = get_spec(system)
        self.system = self.spec.name
        self.seed = seed
        self.lock = threading.RLock()
        self._clock = clock or time.time
        self._offset_ms = 0
        self._last_ms = 0
        self._records: dict[str, dict[str, Record]] = {t: {} for t in self.spec.object_types}
        self._events: list[Event] = []
        self._event_seq = 0
        self._listeners: list[Callable[[Event], None]] = []
        self._counters: dict[str, int] = {}
        self._initial: tuple | None = None
        self._seed_rngs()

    def _seed_rngs(self) -> None:
        self.id_rng = random.Random(f"{self.seed}:{self.system}:ids")
        self.tick_rng = random.Random(f"{self.seed}:{self.system}:tick")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_rows(
        cls,
        rows: Mapping[str, Iterable[Mapping[str, Any]]],
        *,
        system: str | None = None,
        seed: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> World:
        """A world holding ``rows``: ``{"companies": [dict, ...], "contacts": [...]}``.

        The system is inferred from the object types when not given. Each row holds the
        vendor's fields plus optional ``id``, ``created_at``, ``updated_at`` (ISO 8601,
        unix seconds or ms) and ``deleted``/``archived``; see docs/simulators.md for the
        few per-system conveniences (flat addresses, ``vat``, ``solved_at`` ...).
        """
        from .systems import infer_system

        world = cls(system or infer_system(rows.keys()), seed=seed, clock=clock)
        world.load(rows)
        world.mark_initial()
        return world

    @classmethod
    def generate(
        cls, system: str, *, customers: int = 30, seed: int = 0, now: float | None = None
    ) -> World:
        """A deterministic world of ``customers`` parties (same seed: same data).

        The three systems generated with one seed describe the same population, with the
        duplicates, format differences and conflicts real systems have between them.
        """
        from .generate import generate_rows

        rows = generate_rows(system, customers=customers, seed=seed, now=now)
        return cls.from_rows(rows, system=system, seed=seed)

    def load(self, rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Add rows without events (the state the world starts from)."""
        with self.lock:
            now = self.now_ms()
            for type_name, items in rows.items():
                obj_type = self.spec.canonical_type(type_name)
                for row in items:
                    rec = self.spec.record_from_row(self, obj_type, dict(row), now)
                    self._records[obj_type][rec.id] = rec
                    self._note_id(obj_type, rec.id)
                    self._last_ms = max(self._last_ms, rec.updated, rec.deleted_at or 0)

    def mark_initial(self) -> None:
        """Remember the current state for :meth:`reset`."""
        with self.lock:
            self._initial = (copy.deepcopy(self._records), dict(self._counters))

    def reset(self) -> None:
        """Back to the state of :meth:`mark_initial`, with an empty change feed."""
        with self.lock:
            if self._initial is not None:
                records, counters = self._initial
                self._records = copy.deepcopy(records)
                self._counters = dict(counters)
            self._events = []
            self._seed_rngs()

    # -- clock and ids ------------------------------------------------------------------

    def now_ms(self) -> int:
        """Current time in ms; strictly increasing per world."""
        with self.lock:
            now = max(int(self._clock() * 1000) + self._offset_ms, self._last_ms + 1)
            self._last_ms = now
            return now

    def advance(self, seconds: float) -> int:
        """Move this world's clock forward (tests: a clean boundary between changes)."""
        with self.lock:
            self._offset_ms += int(seconds * 1000)
            return self.now_ms()

    def next_number(self, key: str, start: int) -> int:
        """The next number of a sequence (numeric ids)."""
        with self.lock:
            value = max(self._counters.get(key, start), start) + 1
            self._counters[key] = value
            return value

    def _note_id(self, obj_type: str, rid: str) -> None:
        if rid.isdigit():
            self._counters[obj_type] = max(self._counters.get(obj_type, 0), int(rid))

    def new_id(self, obj_type: str) -> str:
        with self.lock:
            for _ in range(1000):
                rid = self.spec.new_id(self, obj_type)
                if rid not in self._records[obj_type]:
                    return rid
            raise RuntimeError(f"could not find a free id for {obj_type}")

    # -- reads --------------------------------------------------------------------------

    @property
    def object_types(self) -> tuple[str, ...]:
        return self.spec.object_types

    def records(self, obj_type: str, *, deleted: bool | None = False) -> list[Record]:
        """Snapshots of one type: live ones (default), only deleted (True) or all (None)."""
        obj_type = self.spec.canonical_type(obj_type)
        with self.lock:
            return [
                r.snapshot()
                for r in self._records[obj_type].values()
                if deleted is None or r.deleted == deleted
            ]

    def get(self, obj_type: str, rid: Any, *, include_deleted: bool = True) -> Record | None:
        obj_type = self.spec.canonical_type(obj_type)
        with self.lock:
            rec = self._records[obj_type].get(str(rid))
            if rec is None or (rec.deleted and not include_deleted):
                return None
            return rec.snapshot()

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {
                t: sum(1 for r in recs.values() if not r.deleted)
                for t, recs in self._records.items()
            }

    def events(self, *, since_seq: int = 0) -> list[Event]:
        """The change feed, oldest first."""
        with self.lock:
            return [e for e in self._events if e.seq > since_seq]

    @property
    def last_event_seq(self) -> int:
        return self._event_seq

    # -- writes -------------------------------------------------------------------------

    def create(
        self,
        obj_type: str,
        data: Mapping[str, Any],
        *,
        id: Any = None,
        assoc: Mapping[str, Iterable[Any]] | None = None,
        events: list[str] | None = None,
    ) -> Record:
        """Add a record now; emits its creation event(s)."""
        obj_type = self.spec.canonical_type(obj_type)
        with self.lock:
            rid = str(id) if id is not None else self.new_id(obj_type)
            if rid in self._records[obj_type]:
                raise ValueError(f"{obj_type} {rid} already exists")
            now = self.now_ms()
            rec = Record(
                type=obj_type,
                id=rid,
                data=copy.deepcopy(dict(data)),
                created=now,
                updated=now,
                assoc={k: [str(v) for v in ids] for k, ids in (assoc or {}).items()},
            )
            self._records[obj_type][rid] = rec
            self._note_id(obj_type, rid)
            self._emit(rec, "created", None, events)
            return rec.snapshot()

    def update(
        self,
        obj_type: str,
        rid: Any,
        changes: Mapping[str, Any],
        *,
        assoc: Mapping[str, Iterable[Any]] | None = None,
        events: list[str] | None = None,
    ) -> Record:
        """Change fields of a live record (KeyError if missing or deleted).

        A write that changes nothing bumps nothing and emits nothing.
        """
        obj_type = self.spec.canonical_type(obj_type)
        with self.lock:
            rec = self._records[obj_type].get(str(rid))
            if rec is None or rec.deleted:
                raise KeyError(f"{obj_type} {rid}")
            data = copy.deepcopy(rec.data)
            previous: dict[str, Any] = {}
            for key, value in changes.items():
                if data.get(key) != value:
                    previous[key] = data.get(key)
                    data[key] = copy.deepcopy(value)
            new_assoc = dict(rec.assoc)
            if assoc is not None:
                for key, ids in assoc.items():
                    new_assoc[key] = [str(v) for v in ids]
            if not previous and new_assoc == rec.assoc:
                return rec.snapshot()
            if new_assoc != rec.assoc:
                previous.setdefault("associations", copy.deepcopy(rec.assoc))
            self._push_history(rec)
            rec.data = data
            rec.assoc = new_assoc
            rec.updated = self.now_ms()
            rec.version += 1
            self._emit(rec, "updated", previous, events)
            return rec.snapshot()

    def delete(self, obj_type: str, rid: Any, *, events: list[str] | None = None) -> Record:
        """Soft-delete (archive) a live record (KeyError if missing or already deleted)."""
        obj_type = self.spec.canonical_type(obj_type)
        with self.lock:
            rec = self._records[obj_type].get(str(rid))
            if rec is None or rec.deleted:
                raise KeyError(f"{obj_type} {rid}")
            self._push_history(rec)
            rec.deleted = True
            rec.updated = rec.deleted_at = self.now_ms()
            rec.version += 1
            self._emit(rec, "deleted", None, events)
            return rec.snapshot()

    def tick(self, n: int = 1) -> list[Event]:
        """Make ``n`` realistic changes (deterministic per seed); returns their events."""
        n = max(0, min(int(n), MAX_TICK))
        with self.lock:
            before = self._event_seq
            for _ in range(n):
                for _attempt in range(10):  # a drawn change may turn out to change nothing
                    seq = self._event_seq
                    self.spec.tick(self, self.tick_rng)
                    if self._event_seq > seq:
                        break
            return self.events(since_seq=before)

    # -- change feed --------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` for every event (under the lock: keep it short)."""
        with self.lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Event], None]) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _push_history(self, rec: Record) -> None:
        old = replace(rec, history=[])
        rec.history = [*rec.history, old][-HISTORY_DEPTH:]

    def _emit(
        self, rec: Record, action: str, previous: dict[str, Any] | None, types: list[str] | None
    ) -> None:
        clean = {k: v for k, v in (previous or {}).items() if not k.startswith("_")}
        for event_type in types or self.spec.event_types(rec.type, action, rec, clean):
            self._event_seq += 1
            event = Event(
                seq=self._event_seq,
                id=self.spec.new_event_id(self),
                type=event_type,
                created=rec.updated,
                record=rec.snapshot(),
                previous=clean if action == "updated" else None,
            )
            self._events.append(event)
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # a listener must never break a write
                    logger.exception("simulator event listener failed")
        if len(self._events) > MAX_EVENTS:
            del self._events[: len(self._events) - MAX_EVENTS]
