"""Mapping: a source record (flat CSV row or nested JSON) to canonical values.

The format is documented in docs/mapping.md::

    {"external_id": "<column>", "updated_at": "<column, optional>",
     "fields": {"<column>": "<canonical field>"},
     "values": {"<canonical field>": {"<source value>": "<canonical value>"}},
     "refs": {"customer": "<column>", "invoice": "<column>"}}

Columns may be dotted paths into nested JSON (``properties.email``). The id columns
(``external_id`` and each ref column) may instead be ``{"field": "<column>", "prefix":
"company:"}``: the prefix keeps the ids of two object types that feed one entity apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from customers.schema import OPTIONAL_REFS, REQUIRED_REFS, SCHEMA, coerce_fields, parse_timestamp

DELETED_MARK = "_deleted"


class MappingConfigError(ValueError):
    """The mapping file itself is wrong: nothing can be imported with it."""


class RecordError(ValueError):
    """One record cannot be mapped; the message says which values and why."""


def lookup(payload: dict[str, Any], column: str) -> Any:
    """Value of a column or dotted path; ``None`` when absent."""
    if column in payload:
        return payload[column]
    node: Any = payload
    for part in column.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


@dataclass(frozen=True)
class MappedRecord:
    external_id: str
    source_updated_at: dt.datetime | None
    values: dict[str, Any]
    refs: dict[str, str]
    deleted: bool = False


@dataclass(frozen=True)
class Mapping:
    entity: str
    external_id: str
    fields: dict[str, str]
    updated_at: str | None = None
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    refs: dict[str, Any] = field(default_factory=dict)  # name → column(s), as configured
    deleted: str | None = None  # column that is truthy when the source deleted the record
    id_prefix: str = ""  # put before the external id (``{"field", "prefix"}`` form)

    @classmethod
    def from_dict(cls, data: Any, *, entity: str) -> Mapping:
        if entity not in SCHEMA:
            raise MappingConfigError(f"unknown entity {entity!r}")
        if not isinstance(data, dict):
            raise MappingConfigError("a mapping must be a JSON object")
        unknown_keys = set(data) - {
            "external_id",
            "updated_at",
            "fields",
            "values",
            "refs",
            "deleted",
        }
        if unknown_keys:
            raise MappingConfigError(f"unknown mapping keys: {', '.join(sorted(unknown_keys))}")
        external_id, id_prefix = _id_column(data.get("external_id"))
        if not external_id:
            raise MappingConfigError(
                '"external_id" must name the column holding the source id '
                '(or be {"field": "<column>", "prefix": "<text>"})'
            )
        fields = data.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise MappingConfigError('"fields" must map source columns to canonical fields')
        canonical = SCHEMA[entity]
        bad = sorted(f"{c} → {f}" for c, f in fields.items() if f not in canonical)
        if bad:
            raise MappingConfigError(
                f"not canonical fields of {entity}: {', '.join(bad)} "
                f"(known: {', '.join(canonical)})"
            )
        values = data.get("values", {})
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise MappingConfigError('"values" must map canonical fields to {source: canonical}')
        bad = sorted(set(values) - set(canonical))
        if bad:
            raise MappingConfigError(f"value maps for unknown fields: {', '.join(bad)}")
        refs = data.get("refs", {})
        allowed_refs = set(REQUIRED_REFS[entity]) | set(OPTIONAL_REFS.get(entity, ()))
        if not isinstance(refs, dict) or set(refs) - allowed_refs:
            raise MappingConfigError(
                f'"refs" of {entity} may name: {", ".join(sorted(allowed_refs)) or "nothing"}'
            )
        for name, columns in refs.items():
            if _ref_columns(columns) is None:
                raise MappingConfigError(
                    f"refs.{name} must be a column or a list of columns (first non-empty "
                    'wins); a column may be {"field": "<column>", "prefix": "<text>"}'
                )
        missing = set(REQUIRED_REFS[entity]) - set(refs)
        if missing:
            raise MappingConfigError(
                f'{entity} records need "refs" naming the column of their {", ".join(missing)}'
            )
        updated_at = data.get("updated_at")
        if updated_at is not None and not isinstance(updated_at, str):
            raise MappingConfigError('"updated_at" must name a column')
        deleted = data.get("deleted")
        if deleted is not None and not isinstance(deleted, str):
            raise MappingConfigError('"deleted" must name a column')
        return cls(
            entity=entity,
            external_id=external_id,
            fields=dict(fields),
            updated_at=updated_at,
            values={f: {str(k): v for k, v in m.items()} for f, m in values.items()},
            refs=dict(refs),
            deleted=deleted,
            id_prefix=id_prefix,
        )

    @classmethod
    def load(cls, path: str | Path, *, entity: str) -> Mapping:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise MappingConfigError(f"cannot read mapping {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise MappingConfigError(f"mapping {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, entity=entity)

    def as_dict(self) -> dict[str, Any]:
        external_id: Any = self.external_id
        if self.id_prefix:
            external_id = {"field": self.external_id, "prefix": self.id_prefix}
        data: dict[str, Any] = {"external_id": external_id, "fields": self.fields}
        if self.updated_at:
            data["updated_at"] = self.updated_at
        if self.values:
            data["values"] = self.values
        if self.refs:
            data["refs"] = self.refs
        if self.deleted:
            data["deleted"] = self.deleted
        return data

    @cached_property
    def fingerprint(self) -> str:
        text = json.dumps([self.entity, self.as_dict()], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @cached_property
    def ref_columns(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """``refs`` as (column, prefix) pairs per name, in the order they are tried."""
        return {name: _ref_columns(columns) or () for name, columns in self.refs.items()}

    def external_id_of(self, payload: dict[str, Any]) -> str:
        return _id_text(lookup(payload, self.external_id), self.id_prefix)

    def refs_of(self, payload: dict[str, Any]) -> dict[str, str]:
        """External ids (same system) of the records this one refers to: per ref, the
        first column with a value, with its prefix."""
        refs = {}
        for name, columns in self.ref_columns.items():
            for column, prefix in columns:
                text = _id_text(lookup(payload, column), prefix)
                if text:
                    refs[name] = text
                    break
        return refs

    def map(self, payload: dict[str, Any]) -> MappedRecord:
        """Canonical values of one record; raises RecordError listing every bad value."""
        errors: list[str] = []
        external_id = self.external_id_of(payload)
        # A connector marks records its source reports deleted with "_deleted".
        deleted = _truthy(payload.get(DELETED_MARK)) or (
            bool(self.deleted) and _truthy(lookup(payload, self.deleted))
        )
        if not external_id:
            errors.append(f"missing external id (column {self.external_id!r})")
        source_time = None
        if self.updated_at:
            raw_time = lookup(payload, self.updated_at)
            if raw_time in (None, ""):
                errors.append(f"missing update time (column {self.updated_at!r})")
            else:
                try:
                    source_time = parse_timestamp(raw_time)
                except ValueError as exc:
                    errors.append(f"{self.updated_at}: {exc}")
        raw: dict[str, Any] = {}
        for column, canonical in self.fields.items():
            value = lookup(payload, column)
            if isinstance(value, str):
                value = value.strip()
            table = self.values.get(canonical)
            if table and value not in (None, ""):
                key = str(value)
                if key in table:
                    value = table[key]
                else:
                    folded = {k.casefold(): v for k, v in table.items()}
                    value = folded.get(key.casefold(), value)
            if value not in (None, "") or canonical not in raw:
                raw[canonical] = value
        values, value_errors = coerce_fields(self.entity, raw)
        if not deleted:  # a delete needs its id and time, not valid values
            errors.extend(value_errors)
        refs = self.refs_of(payload)
        if errors:
            raise RecordError("; ".join(errors))
        return MappedRecord(external_id, source_time, values, refs, deleted)


def _id_column(spec: Any) -> tuple[str, str]:
    """(column, prefix) of an id column: ``"id"`` or ``{"field": "id", "prefix": "company:"}``;
    an empty column when ``spec`` is neither."""
    if isinstance(spec, str):
        return spec, ""
    if (
        isinstance(spec, dict)
        and set(spec) <= {"field", "prefix"}
        and isinstance(spec.get("field"), str)
        and isinstance(spec.get("prefix", ""), str)
    ):
        return spec["field"], spec.get("prefix", "")
    return "", ""


def _ref_columns(spec: Any) -> tuple[tuple[str, str], ...] | None:
    """A ref's (column, prefix) pairs, or None when ``spec`` is not a valid ref."""
    specs = spec if isinstance(spec, list) else [spec]
    columns = tuple(_id_column(s) for s in specs)
    if not columns or not all(column for column, _ in columns):
        return None
    return columns


def _id_text(value: Any, prefix: str) -> str:
    """A source id as text (stripped), with its prefix; "" when there is none."""
    if value is None:
        return ""
    text = str(value).strip()
    return prefix + text if text else ""


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "deleted", "archived")
    return bool(value)


def content_hash(payload: dict[str, Any], mapping: Mapping) -> str:
    """Hash of the payload and of the mapping that reads it.

    A re-delivered record hashes the same and changes nothing; re-importing with a changed
    mapping is new content and is processed again.
    """
    return content_hash_of_text(payload_text(payload), mapping)


def payload_text(payload: dict[str, Any]) -> str:
    """The payload as canonical JSON text: what is hashed, and what the landing stores."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def content_hash_of_text(text: str, mapping: Mapping) -> str:
    """:func:`content_hash` of a payload already encoded by :func:`payload_text`."""
    return hashlib.sha256(f"{mapping.fingerprint}:{text}".encode()).hexdigest()
