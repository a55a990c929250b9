"""Which systems can be simulated, and the per-system rules of their stores."""

from __future__ import annotations

import random
import string
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .world import Record, World

SYSTEMS = ("crm", "erp", "helpdesk")
ALIASES = {
    "crm": "crm",
    "hubspot": "crm",
    "erp": "erp",
    "billing": "erp",
    "stripe": "erp",
    "helpdesk": "helpdesk",
    "help_desk": "helpdesk",
    "help-desk": "helpdesk",
    "zendesk": "helpdesk",
}
ALNUM = string.ascii_letters + string.digits


def canonical_system(name: str) -> str:
    try:
        return ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; one of {', '.join(SYSTEMS)}") from None


class SystemSpec:
    """The store rules of one system: object types, ids, event names, rows, live changes."""

    name = ""
    vendor = ""
    object_types: tuple[str, ...] = ()
    type_aliases: dict[str, str] = {}

    def canonical_type(self, name: str) -> str:
        key = str(name).strip().lower()
        key = self.type_aliases.get(key, key)
        if key not in self.object_types:
            raise KeyError(f"{self.name} has no object type {name!r}")
        return key

    def new_id(self, world: World, obj_type: str) -> str:
        raise NotImplementedError

    def new_event_id(self, world: World) -> str:
        raise NotImplementedError

    def event_types(
        self, obj_type: str, action: str, record: Record, previous: dict[str, Any]
    ) -> list[str]:
        raise NotImplementedError

    def record_from_row(self, world: World, obj_type: str, row: dict[str, Any], now: int) -> Record:
        raise NotImplementedError

    def tick(self, world: World, rng: random.Random) -> None:
        raise NotImplementedError


def get_spec(system: str) -> SystemSpec:
    from . import crm, erp, helpdesk

    return {"crm": crm.SPEC, "erp": erp.SPEC, "helpdesk": helpdesk.SPEC}[canonical_system(system)]


def infer_system(types: Iterable[str]) -> str:
    """The system whose object types include all of ``types``."""
    names = list(types)
    for system in SYSTEMS:
        spec = get_spec(system)
        try:
            for name in names:
                spec.canonical_type(name)
        except KeyError:
            continue
        if names:
            return system
    raise ValueError(f"cannot tell the system from object types {names}; pass system=")


def random_token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALNUM) for _ in range(length))


def row_meta(
    row: dict[str, Any],
    now: int,
    *,
    created_keys: tuple[str, ...] = ("created_at", "createdAt", "created"),
    updated_keys: tuple[str, ...] = ("updated_at", "updatedAt", "updated"),
    deleted_keys: tuple[str, ...] = ("deleted", "archived"),
    deleted_at_keys: tuple[str, ...] = ("deleted_at", "archived_at", "archivedAt"),
) -> tuple[str | None, int, int, bool, int | None]:
    """Pop the common meta keys off a row: id, created, updated, deleted, deleted_at."""
    from .world import to_ms

    rid = row.pop("id", None)

    def first(keys: tuple[str, ...]) -> Any:
        found = None
        for key in keys:
            value = row.pop(key, None)
            if found is None and value not in (None, ""):
                found = value
        return found

    created_raw, updated_raw = first(created_keys), first(updated_keys)
    deleted_raw, deleted_at_raw = first(deleted_keys), first(deleted_at_keys)
    created = to_ms(created_raw) if created_raw is not None else None
    updated = to_ms(updated_raw) if updated_raw is not None else None
    created = created if created is not None else (updated if updated is not None else now)
    updated = max(updated if updated is not None else created, created)
    deleted = _truthy(deleted_raw) or deleted_at_raw is not None
    deleted_at = to_ms(deleted_at_raw) if deleted_at_raw is not None else None
    if deleted:
        deleted_at = max(deleted_at or updated, updated)
        updated = deleted_at
    return (None if rid in (None, "") else str(rid)), created, updated, deleted, deleted_at


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "t")
    return bool(value)


def weighted_choice(rng: random.Random, options: list[tuple[Any, float]]) -> Any:
    total = sum(w for _, w in options)
    pick = rng.random() * total
    for value, weight in options:
        pick -= weight
        if pick < 0:
            return value
    return options[-1][0]
