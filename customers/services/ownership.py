"""The field-ownership matrix applied to one incoming value. Pure decisions, no writes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from customers.models import ConflictRule, FieldOwnership, SourceSystem


class Decision(StrEnum):
    APPLY = "apply"  # value changes (or is set for the first time)
    CONFIRM = "confirm"  # same value, newer evidence: provenance is refreshed
    SAME = "same"  # same value, nothing to write
    STALE = "stale"  # older than the value already applied
    REJECTED = "rejected"  # another system owns the field


@dataclass(frozen=True)
class Current:
    """What the hub holds for a field now."""

    value: str
    system: SourceSystem | None  # None when no provenance exists (never applied by a system)
    source_updated_at: dt.datetime | None


class Matrix:
    """The ownership cells of one entity, with the ``*`` row as the default."""

    def __init__(self, entity: str, cells: list[FieldOwnership]) -> None:
        self.entity = entity
        self.cells = {c.field: c for c in cells if c.entity == entity}

    @classmethod
    def load(cls, entity: str) -> Matrix:
        return cls(entity, list(FieldOwnership.objects.filter(entity=entity)))

    def cell(self, field: str) -> FieldOwnership | None:
        return self.cells.get(field) or self.cells.get("*")

    def decide(
        self,
        field: str,
        *,
        system: SourceSystem,
        source_updated_at: dt.datetime,
        value: str,
        current: Current,
    ) -> Decision:
        same = value == current.value
        if current.system is None:
            return Decision.SAME if same else Decision.APPLY
        newer = current.source_updated_at is None or source_updated_at > current.source_updated_at
        not_older = current.source_updated_at is None or (
            source_updated_at >= current.source_updated_at
        )
        cell = self.cell(field)
        rule = cell.conflict_rule if cell else ConflictRule.NEWEST_WINS
        if rule == ConflictRule.SYSTEM_WINS and cell is not None:
            incoming_owns = cell.is_owner(system)
            current_owned = cell.is_owner(current.system)
            if current_owned and not incoming_owns:
                return Decision.SAME if same else Decision.REJECTED
            if incoming_owns and not current_owned:
                return Decision.CONFIRM if same else Decision.APPLY
            allowed = not_older if current.system.pk == system.pk else newer
        elif rule == ConflictRule.MOST_TRUSTED:
            if system.trust_rank < current.system.trust_rank:
                return Decision.SAME if same else Decision.REJECTED
            if system.trust_rank > current.system.trust_rank:
                return Decision.CONFIRM if same else Decision.APPLY
            allowed = not_older if current.system.pk == system.pk else newer
        else:
            allowed = not_older if current.system.pk == system.pk else newer
        if not allowed:
            return Decision.SAME if same else Decision.STALE
        return Decision.CONFIRM if same else Decision.APPLY
