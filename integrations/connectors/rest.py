"""The declarative REST connector: one configuration covers most JSON APIs.

A connection's config names the base URL, the authentication, and per stream the path,
where the records are in the answer, how pages follow each other and how a sync resumes
(docs/connectors.md has the full format and an example of each style). The connector only
talks HTTP: it never sleeps or retries on 429 / 5xx (the Celery task does, with backoff),
except for the one retry after refreshing an expired OAuth token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

from .base import Change, ConnectorError, Page, PushResult, WebhookRequest
from .http import HttpClient, Response, origin

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_PAGES = 10_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

AUTH_TYPES = ("none", "bearer", "api_key", "basic", "oauth2_client_credentials")
PAGINATION_TYPES = ("none", "cursor", "page", "offset", "link", "next_url", "starting_after")
TIME_FORMATS = ("iso", "unix", "unix_ms")
WEBHOOK_SCHEMES = {"concord_v1": "X-Concord-Signature", "stripe_v1": "Stripe-Signature"}
PLACEHOLDERS = ("{cursor}", "{page_token}")
# Query or body keys that set a page size; check() asks for one record through them.
SIZE_KEYS = ("limit", "per_page", "page_size", "pageSize", "count")


class ConnectorConfigError(ConnectorError, ValueError):
    """The configuration (or the credentials it needs) is wrong; nothing can be pulled.

    A ValueError for callers that validate input, and a permanent ConnectorError for the
    sync machinery, which then stops and shows ``errors`` in the UI.
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"- {e}" for e in self.errors)
        super().__init__(f"invalid REST connector configuration:\n{lines}", permanent=True)


# -- small helpers -----------------------------------------------------------------------


def dig(data: Any, path: str) -> Any:
    """Value at a dotted path (``paging.next.after``, ``results.0.id``); None if absent."""
    if not path:
        return data
    if isinstance(data, dict) and path in data:
        return data[path]
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def parse_time(value: Any, fmt: str = "auto") -> dt.datetime | None:
    """An ISO 8601 string or a Unix time (seconds, or milliseconds when ``fmt`` says so or
    the number is too large to be seconds) as an aware UTC datetime; None if neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = Decimal(value.strip())
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value))
        if fmt == "unix_ms" or (fmt == "auto" and abs(number) >= 10**11):
            number /= 1000
        try:
            return EPOCH + dt.timedelta(microseconds=int(number * 1_000_000))
        except OverflowError:
            return None
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return None


def format_time(moment: dt.datetime, fmt: str) -> str | int:
    """``moment`` as a request value, rounded down (an inclusive filter then never misses)."""
    if fmt == "unix":
        return (moment - EPOCH) // dt.timedelta(seconds=1)
    if fmt == "unix_ms":
        return (moment - EPOCH) // dt.timedelta(milliseconds=1)
    moment = moment.astimezone(dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(moment.timestamp() - now, 0.0)


def sign_webhook(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``t=<unix>,v1=<hex>`` header value for ``body`` (for senders, tests, the demo)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return f"t={stamp},v1={digest.hexdigest()}"


def form_encode(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Nested data as form fields the way Stripe reads them: ``metadata[key]=value``."""
    fields: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        elif isinstance(value, bool):
            fields.append((prefix, "true" if value else "false"))
        else:
            fields.append((prefix, "" if value is None else str(value)))

    walk("", data)
    return fields


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    return value


def substitute(template: Any, name: str, value: Any) -> Any:
    """Replace the ``{name}`` placeholder in the strings of a params or body template.

    Values are written as text. With no value, a key (or list item) that is only the
    placeholder is dropped, so a first page sends no ``after`` at all.
    """
    mark = "{" + name + "}"
    if isinstance(template, dict):
        result = {}
        for key, item in template.items():
            if item == mark and value is None:
                continue
            result[key] = substitute(item, name, value)
        return result
    if isinstance(template, list):
        return [substitute(v, name, value) for v in template if not (v == mark and value is None)]
    if isinstance(template, str) and mark in template:
        return template.replace(mark, "" if value is None else str(value))
    return template


def _unprefixed(external_id: str | None, prefix: str, stream: str) -> str | None:
    """The target's own id of a hub external id that carries the push spec's ``id_prefix``
    (mappings prefix ids of object types that share an entity: ``company:123``)."""
    if not prefix or external_id is None:
        return external_id
    if not external_id.startswith(prefix):
        raise ConnectorError(
            f"{external_id!r} is not a {stream} record (its id does not start with {prefix!r})",
            permanent=True,
        )
    return external_id[len(prefix) :]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- transforms --------------------------------------------------------------------------

# Stripe's list of currencies without minor units, and those with three decimals.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def _cents_to_units(value: Any, record: dict, options: dict) -> Any:
    if isinstance(value, bool) or value in (None, ""):
        return value
    try:
        minor = Decimal(str(value).strip())
    except InvalidOperation:
        return value  # left for the mapping to report
    currency = str(dig(record, options.get("currency_path", "currency")) or "").upper()
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return format(minor.scaleb(-exponent), "f")


def _unix_to_iso(value: Any, record: dict, options: dict) -> Any:
    if isinstance(value, bool) or not (
        isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value))
    ):
        return value
    moment = parse_time(value, options.get("unit", "unix"))
    return value if moment is None else format_time(moment, "iso")


def _join(value: Any, record: dict, options: dict) -> Any:
    if not isinstance(value, list):
        return value
    separator = options.get("separator", ", ")
    return separator.join(str(v) for v in value if v not in (None, ""))


def _split_name(value: Any, record: dict, options: dict) -> Any:
    if not isinstance(value, str):
        return value
    first, _, last = value.strip().partition(" ")
    return {"first": first, "last": last.strip()}


def _objects(value: Any, record: dict, options: dict) -> Any:
    """A list of objects reshaped: ``{"fields": {"<new key>": "<dotted path in the item>"}}``
    (Stripe line items ``price.unit_amount`` → ``unit_price``, for an order's lines)."""
    if not isinstance(value, list):
        return value
    fields = options.get("fields", {})
    return [_pick(item, fields) if isinstance(item, dict) else item for item in value]


def _pick(item: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """The keys of ``fields`` with the values at their paths in ``item``, absent ones left out."""
    picked = {key: dig(item, path) for key, path in fields.items()}
    return {key: value for key, value in picked.items() if value is not None}


TRANSFORMS: dict[str, Callable[[Any, dict, dict], Any]] = {
    "cents_to_units": _cents_to_units,
    "unix_to_iso": _unix_to_iso,
    "join": _join,
    "split_name": _split_name,
    "objects": _objects,
}


def _targets(node: Any, parts: list[str], prefix: str) -> Iterator[tuple[Any, Any, str]]:
    """(container, key, concrete path) for a dotted path where ``*`` means every item."""
    head, rest = parts[0], parts[1:]
    if head == "*":
        keys = range(len(node)) if isinstance(node, list) else []
    elif isinstance(node, dict) and head in node:
        keys = [head]
    elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
        keys = [int(head)]
    else:
        keys = []
    for key in keys:
        path = f"{prefix}.{key}" if prefix else str(key)
        if rest:
            yield from _targets(node[key], rest, path)
        else:
            yield node, key, path


def selected(records: list[dict[str, Any]], select: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The records a stream keeps: with ``select`` only those whose ``path`` has a value
    (``present: true``) or has none (``present: false``), so one endpoint can feed two
    streams (Zendesk end users with an organization are contacts, without one customers)."""
    if not select:
        return records
    return [r for r in records if (dig(r, select["path"]) not in (None, "")) == select["present"]]


def apply_transforms(record: dict[str, Any], transforms: dict[str, Any]) -> dict[str, Any]:
    """Apply the stream's named transforms in place; replaced source values are kept under
    ``_original`` so the landed payload still holds what the source sent.

    Deeper paths go first, so a transform of a list sees its items' values converted
    (``line_items.data.*.price.unit_amount`` before ``line_items.data``): a stored
    configuration keeps no key order (PostgreSQL's jsonb sorts keys)."""
    originals: dict[str, Any] = {}
    for path, spec in sorted(transforms.items(), key=lambda item: -item[0].count(".")):
        name, options = (spec, {}) if isinstance(spec, str) else (spec["name"], spec)
        function = TRANSFORMS[name]
        for container, key, concrete in list(_targets(record, path.split("."), "")):
            old = container[key]
            new = function(old, record, options)
            if new != old:
                container[key] = new
                originals[concrete] = old
    if originals:
        record["_original"] = originals
    return record


# -- validation --------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}" if where else message)

    def obj(
        self, where: str, value: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> bool:
        if not isinstance(value, dict):
            self.add(where, "must be an object")
            return False
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            self.add(where, f"unknown keys {', '.join(unknown)} (allowed: {', '.join(allowed)})")
        missing = [k for k in required if k not in value]
        if missing:
            self.add(where, f"missing {', '.join(missing)}")
        return True

    def text(self, where: str, value: Any, *, choices: tuple[str, ...] = ()) -> None:
        if not isinstance(value, str) or (not value and not choices):
            self.add(where, "must be a non-empty string")
        elif choices and value not in choices:
            self.add(where, f"{value!r} is not one of {', '.join(choices)}")

    def number(self, where: str, value: Any, *, minimum: float, integer: bool = False) -> None:
        kinds = int if integer else int | float
        if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
            kind = "an integer" if integer else "a number"
            self.add(where, f"must be {kind} ≥ {minimum:g}")

    def strings(self, where: str, value: Any) -> None:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self.add(where, "must be an object of strings")


_AUTH_KEYS = {
    "none": (),
    "bearer": (),
    "api_key": ("header", "param", "in", "prefix"),
    "basic": ("username", "password"),
    "oauth2_client_credentials": ("token_url", "scope", "client_auth", "token_params"),
}
_PAGINATION_KEYS = {
    "none": (),
    "cursor": ("param", "next_path", "in"),
    "page": ("param", "size_param", "size", "start", "next_path", "in"),
    "offset": ("param", "limit_param", "limit", "start", "total_path", "next_path", "in"),
    "link": ("rel",),
    "next_url": ("next_path",),
    "starting_after": ("param", "id_field", "has_more_path", "in"),
}
_STREAM_KEYS = (
    "path",
    "method",
    "params",
    "body",
    "headers",
    "record_path",
    "pagination",
    "incremental",
    "entity",
    "mapping",
    "deleted_path",
    "deleted_values",
    "transform",
    "max_pages",
    "select",
    "associations",
)
_REQUEST_KEYS = ("path", "method", "params", "body", "record_path", "pagination")
_HIGH_WATER_KEYS = (
    "type",
    "cursor_field",
    "field_format",
    "param",
    "in",
    "format",
    "lookback_seconds",
    "sorted",
    "start",
    "request",
    "max_results",
)
_RESPONSE_CURSOR_KEYS = ("type", "start_param", "start", "param", "cursor_path", "end_path")
_PUSH_KEYS = ("create", "update", "delete", "wrap", "id_path", "encoding", "id_prefix")
_PUSH_OP_KEYS = ("path", "method", "id_field")
_WEBHOOK_KEYS = ("signature_header", "scheme", "tolerance_seconds", "events")


def _basic_templates(auth: dict[str, Any]) -> tuple[str, str]:
    return auth.get("username", "{username}"), auth.get("password", "{password}")


def required_credentials(config: dict[str, Any]) -> list[str]:
    """The credential names the configured authentication reads."""
    auth = config.get("auth") or {"type": "none"}
    kind = auth.get("type")
    if kind == "bearer":
        return ["token"]
    if kind == "api_key":
        return ["api_key"]
    if kind == "oauth2_client_credentials":
        return ["client_id", "client_secret"]
    if kind == "basic":
        names: list[str] = []
        for template in _basic_templates(auth):
            names += [n for n in re.findall(r"\{(\w+)\}", str(template)) if n not in names]
        return names
    return []


def _check_pagination(check: _Checker, where: str, pagination: Any, method: str) -> None:
    if not isinstance(pagination, dict):
        check.add(where, "must be an object")
        return
    kind = pagination.get("type")
    if kind not in PAGINATION_TYPES:
        check.add(f"{where}.type", f"{kind!r} is not one of {', '.join(PAGINATION_TYPES)}")
        return
    required = {"cursor": ("param", "next_path"), "next_url": ("next_path",)}.get(kind, ())
    check.obj(where, pagination, ("type", *_PAGINATION_KEYS[kind]), required)
    for key in (
        "param",
        "next_path",
        "size_param",
        "limit_param",
        "id_field",
        "total_path",
        "has_more_path",
    ):
        if key in pagination:
            check.text(f"{where}.{key}", pagination[key])
    for key in ("size", "limit"):
        if key in pagination:
            check.number(f"{where}.{key}", pagination[key], minimum=1, integer=True)
    if "start" in pagination:
        check.number(f"{where}.start", pagination["start"], minimum=0, integer=True)
    if "in" in pagination:
        check.text(f"{where}.in", pagination["in"], choices=("query", "body"))
        if pagination["in"] == "body" and method != "POST":
            check.add(f"{where}.in", '"body" needs method POST')


def _check_request(check: _Checker, where: str, spec: dict[str, Any]) -> str:
    method = spec.get("method", "GET")
    check.text(f"{where}.method", method, choices=("GET", "POST"))
    if "path" in spec:
        path = spec["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            check.add(f"{where}.path", 'must be a path starting with "/"')
    if "params" in spec and not isinstance(spec["params"], dict):
        check.add(f"{where}.params", "must be an object")
    if "body" in spec:
        if not isinstance(spec["body"], dict):
            check.add(f"{where}.body", "must be an object")
        elif method != "POST":
            check.add(f"{where}.body", "needs method POST")
    if "record_path" in spec and not isinstance(spec["record_path"], str):
        check.add(f"{where}.record_path", "must be a dotted path (a string)")
    if "pagination" in spec:
        _check_pagination(check, f"{where}.pagination", spec["pagination"], method)
    return method


def _check_incremental(check: _Checker, where: str, inc: Any, stream: dict[str, Any]) -> None:
    if not isinstance(inc, dict):
        check.add(where, "must be an object")
        return
    if inc.get("type") == "response_cursor":
        check.obj(where, inc, _RESPONSE_CURSOR_KEYS, ("param", "cursor_path"))
        for key in ("start_param", "param", "cursor_path", "end_path"):
            if key in inc:
                check.text(f"{where}.{key}", inc[key])
        pagination = stream.get("pagination", {})
        if isinstance(pagination, dict) and pagination.get("type", "none") != "none":
            check.add(where, "a response cursor pages by itself: leave out pagination")
        return
    if inc.get("type", "high_water") != "high_water":
        check.add(f"{where}.type", f"{inc['type']!r} is not one of high_water, response_cursor")
        return
    check.obj(where, inc, _HIGH_WATER_KEYS, ("cursor_field",))
    if "cursor_field" in inc:
        check.text(f"{where}.cursor_field", inc["cursor_field"])
    if "param" in inc:
        check.text(f"{where}.param", inc["param"])
    check.text(f"{where}.format", inc.get("format", "iso"), choices=TIME_FORMATS)
    check.text(
        f"{where}.field_format", inc.get("field_format", "auto"), choices=("auto", *TIME_FORMATS)
    )
    check.text(f"{where}.in", inc.get("in", "query"), choices=("query", "body"))
    check.number(f"{where}.lookback_seconds", inc.get("lookback_seconds", 0), minimum=0)
    if not isinstance(inc.get("sorted", False), bool):
        check.add(f"{where}.sorted", "must be true or false")
    if "max_results" in inc:
        check.number(f"{where}.max_results", inc["max_results"], minimum=1, integer=True)
        if not inc.get("sorted"):
            check.add(f"{where}.max_results", "restarting a query needs sorted: true")
    method = stream.get("method", "GET")
    if "request" in inc:
        request = inc["request"]
        if check.obj(f"{where}.request", request, _REQUEST_KEYS):
            method = _check_request(check, f"{where}.request", {**stream, **request})
    if inc.get("in") == "body" and method != "POST":
        check.add(f"{where}.in", '"body" needs method POST')


def _check_stream(check: _Checker, name: str, stream: Any) -> None:
    where = f"streams.{name}"
    if not check.obj(where, stream, _STREAM_KEYS, ("path",)):
        return
    _check_request(check, where, stream)
    if "headers" in stream:
        check.strings(f"{where}.headers", stream["headers"])
    if "incremental" in stream:
        _check_incremental(check, f"{where}.incremental", stream["incremental"], stream)
    for key in ("entity", "deleted_path"):
        if key in stream:
            check.text(f"{where}.{key}", stream[key])
    if "mapping" in stream and not isinstance(stream["mapping"], dict):
        check.add(f"{where}.mapping", "must be an object (see docs/mapping.md)")
    if "deleted_values" in stream and not isinstance(stream["deleted_values"], list):
        check.add(f"{where}.deleted_values", "must be a list")
    if "max_pages" in stream:
        check.number(f"{where}.max_pages", stream["max_pages"], minimum=1, integer=True)
    select = stream.get("select")
    if select is not None and not (
        isinstance(select, dict)
        and isinstance(select.get("path"), str)
        and isinstance(select.get("present"), bool)
    ):
        check.add(f"{where}.select", 'must be {"path": "<dotted path>", "present": true|false}')
    join = stream.get("associations")
    if join is not None and not (
        isinstance(join, dict)
        and set(join) <= {"path", "to"}
        and isinstance(join.get("path"), str)
        and join["path"].startswith("/")
        and isinstance(join.get("to"), list)
        and join["to"]
        and all(isinstance(t, str) and t for t in join["to"])
    ):
        check.add(
            f"{where}.associations",
            'must be {"path": "/…/{to}/batch/read", "to": ["<object type>", …]}',
        )
    transforms = stream.get("transform", {})
    if not isinstance(transforms, dict):
        check.add(f"{where}.transform", "must map dotted paths to transform names")
        return
    for path, spec in transforms.items():
        name_ = spec.get("name") if isinstance(spec, dict) else spec
        if not isinstance(name_, str) or name_ not in TRANSFORMS:
            check.add(
                f"{where}.transform.{path}",
                f"{name_!r} is not one of {', '.join(TRANSFORMS)}",
            )


def _check_push(check: _Checker, push: Any) -> None:
    if not isinstance(push, dict):
        check.add("push", "must map target streams to create/update/delete requests")
        return
    for stream, spec in push.items():
        where = f"push.{stream}"
        if not check.obj(where, spec, _PUSH_KEYS):
            continue
        operations = [op for op in ("create", "update", "delete") if op in spec]
        if not operations:
            check.add(where, "needs at least one of create, update, delete")
        for op in operations:
            request = spec[op]
            if not check.obj(f"{where}.{op}", request, _PUSH_OP_KEYS, ("path",)):
                continue
            path = request.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                check.add(f"{where}.{op}.path", 'must be a path starting with "/"')
            elif op != "create" and "{id}" not in path and "id_field" not in request:
                check.add(
                    f"{where}.{op}",
                    'needs "{id}" in the path or an "id_field" to carry the record id',
                )
            check.text(
                f"{where}.{op}.method",
                request.get("method", "POST" if op == "create" else "PATCH"),
                choices=("POST", "PUT", "PATCH", "DELETE"),
            )
        check.text(f"{where}.encoding", spec.get("encoding", "json"), choices=("json", "form"))
        for key in ("wrap", "id_path", "id_prefix"):
            if key in spec:
                check.text(f"{where}.{key}", spec[key])


def validate_config(config: Any, credentials: dict[str, Any] | None = None) -> list[str]:
    """Everything wrong with a REST configuration (and its credentials), as messages.

    Top-level keys other than the connector's own (``consumes`` of the outbox, for
    instance) belong to other parts of the hub and are left alone.
    """
    check = _Checker()
    if not isinstance(config, dict):
        return ["the configuration must be a JSON object"]
    base_url = config.get("base_url")
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        check.add("base_url", "must be an absolute http(s) URL such as https://api.example.com")
    if "timeout" in config:
        check.number("timeout", config["timeout"], minimum=0.001)
    if "max_pages" in config:
        check.number("max_pages", config["max_pages"], minimum=1, integer=True)
    if "headers" in config:
        check.strings("headers", config["headers"])
    auth = config.get("auth", {"type": "none"})
    kind = auth.get("type") if isinstance(auth, dict) else None
    if kind not in AUTH_TYPES:
        check.add("auth.type", f"{kind!r} is not one of {', '.join(AUTH_TYPES)}")
    else:
        required = ("token_url",) if kind == "oauth2_client_credentials" else ()
        check.obj("auth", auth, ("type", *_AUTH_KEYS[kind]), required)
        if kind == "api_key":
            check.text("auth.in", auth.get("in", "header"), choices=("header", "query"))
            if auth.get("in") == "query" and "param" not in auth:
                check.add("auth", 'an API key in the query needs "param"')
        if kind == "oauth2_client_credentials":
            check.text(
                "auth.client_auth", auth.get("client_auth", "basic"), choices=("basic", "body")
            )
            if "token_url" in auth:
                check.text("auth.token_url", auth["token_url"])
        if kind == "basic":
            for key, template in zip(("username", "password"), _basic_templates(auth), strict=True):
                check.text(f"auth.{key}", template)
        missing = [n for n in required_credentials(config) if not (credentials or {}).get(n)]
        if missing:
            check.add("credentials", f"missing {', '.join(missing)} (needed by {kind} auth)")
    streams = config.get("streams")
    if not isinstance(streams, dict) or not streams:
        check.add("streams", "must name at least one stream")
    else:
        for name, stream in streams.items():
            _check_stream(check, name, stream)
    if "push" in config:
        _check_push(check, config["push"])
    if "webhook" in config:
        webhook = config["webhook"]
        if check.obj("webhook", webhook, _WEBHOOK_KEYS):
            scheme = webhook.get("scheme", "concord_v1")
            check.text("webhook.scheme", scheme, choices=tuple(WEBHOOK_SCHEMES))
            check.number(
                "webhook.tolerance_seconds", webhook.get("tolerance_seconds", 300), minimum=1
            )
            if "signature_header" in webhook:
                check.text("webhook.signature_header", webhook["signature_header"])
    return check.errors


# -- pagination --------------------------------------------------------------------------


class _Pager:
    """The paging state of one query: which token comes next, and loop detection."""

    def __init__(self, pagination: dict[str, Any], where: str) -> None:
        self.spec = pagination
        self.kind = pagination.get("type", "none")
        self.where = where
        first = {"page": 1, "offset": 0}
        self.token: Any = pagination.get("start", first[self.kind]) if self.kind in first else None
        self.seen: set[str] = set()
        self.last_digest: str | None = None
        self.loop: ConnectorError | None = None

    def apply(
        self, url: str, params: dict[str, Any], body: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        spec, token = self.spec, self.token
        if self.kind in ("link", "next_url"):
            # The next URL carries every parameter itself.
            return (token, {}, body) if token else (url, params, body)
        params = substitute(params, "page_token", token)
        body = substitute(body, "page_token", token) if body is not None else None
        target = body if spec.get("in") == "body" else params
        if self.kind in ("cursor", "starting_after") and token is not None:
            target[spec.get("param", "starting_after")] = token
        elif self.kind == "page":
            target[spec.get("param", "page")] = token
            if "size_param" in spec:
                target[spec["size_param"]] = spec.get("size", 100)
        elif self.kind == "offset":
            target[spec.get("param", "offset")] = token
            target[spec.get("limit_param", "limit")] = spec.get("limit", 100)
        return url, params, body

    def advance(self, data: Any, response: Response, records: list[dict[str, Any]]) -> bool:
        """Move to the next page; False when this was the last one."""
        spec, kind = self.spec, self.kind
        if kind == "none":
            return False
        if kind in ("page", "offset"):
            if not records or ("next_path" in spec and not dig(data, spec["next_path"])):
                return False
            digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
            if digest == self.last_digest:
                self._loop(f"page {self.token} repeats the previous page")
                return False
            self.last_digest = digest
            if kind == "offset":
                total = dig(data, spec["total_path"]) if "total_path" in spec else None
                self.token += len(records)
                return not (isinstance(total, int) and self.token >= total)
            self.token += 1
            return True
        if kind == "cursor":
            following = dig(data, spec["next_path"])
        elif kind == "starting_after":
            has_more = dig(data, spec.get("has_more_path", "has_more"))
            last = dig(records[-1], spec.get("id_field", "id")) if records else None
            following = last if has_more and last not in (None, "") else None
        elif kind == "link":
            following = self._link_next(response)
        else:  # next_url
            following = dig(data, spec["next_path"])
        if following in (None, "", False):
            return False
        if kind in ("link", "next_url"):
            following = urljoin(response.url, str(following))
            if origin(following) != origin(response.url):
                raise ConnectorError(
                    f"{self.where}: next page {following} is on another host", permanent=True
                )
        key = str(following)
        if key in self.seen:
            self._loop(f"next page token {key!r} was already used")
            return False
        self.seen.add(key)
        self.token = following
        return True

    def _link_next(self, response: Response) -> str | None:
        wanted = self.spec.get("rel", "next")
        for header in response.header_all("Link"):
            for match in re.finditer(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)", header):
                url, attributes = match.group(1), match.group(2)
                rel = re.search(r'rel\s*=\s*"?([^";,]+)"?', attributes)
                if rel and wanted in rel.group(1).split():
                    return url
        return None

    def _loop(self, detail: str) -> None:
        self.loop = ConnectorError(f"{self.where}: pagination loop ({detail})", permanent=True)


class _HighWater:
    """The largest cursor_field value yielded so far, kept as the source wrote it."""

    def __init__(self, spec: dict[str, Any], cursor: str | None, where: str) -> None:
        self.field = spec["cursor_field"]
        self.field_format = spec.get("field_format", "auto")
        self.sorted = bool(spec.get("sorted", False))
        self.value: str | None = None
        self.moment: dt.datetime | None = None
        if cursor:
            moment = parse_time(cursor, self.field_format)
            if moment is None:
                raise ConnectorError(
                    f"{where}: stored cursor {cursor!r} is not a time; run a full sync",
                    permanent=True,
                )
            self.value, self.moment = cursor, moment

    def update(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            raw = dig(record, self.field)
            moment = parse_time(raw, self.field_format)
            if moment is not None and (self.moment is None or moment > self.moment):
                self.moment = moment
                self.value = raw.strip() if isinstance(raw, str) else str(raw)


# -- the connector -----------------------------------------------------------------------


class RestConnector:
    """A connector configured, not coded. See docs/connectors.md for ``config``.

    ``clock`` (monotonic seconds) times OAuth token expiry and ``check()``; ``now`` (Unix
    seconds) judges webhook timestamps and HTTP-date Retry-After values. The connector
    never sleeps: ``sleep`` is accepted so callers can pass one connector signature around.
    """

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        credentials = dict(credentials or {})
        errors = validate_config(config, credentials)
        if errors:
            raise ConnectorConfigError(errors)
        self.config = config
        self.credentials = credentials
        self.base_url = config["base_url"].rstrip("/")
        self.streams: dict[str, dict[str, Any]] = config["streams"]
        self.auth: dict[str, Any] = config.get("auth", {"type": "none"})
        self.max_pages = config.get("max_pages", DEFAULT_MAX_PAGES)
        self.clock, self.sleep, self.now = clock, sleep, now
        self.http = HttpClient(timeout=float(config.get("timeout", DEFAULT_TIMEOUT)))
        self._token: str | None = None
        self._token_expires = 0.0

    # -- pull ----------------------------------------------------------------------------

    def pull(self, stream: str, cursor: str | None) -> Iterator[Page]:
        """Pages of ``stream`` since ``cursor``; each Page's cursor is safe to store once
        that page is landed (None: keep the previous one)."""
        spec = self._stream(stream)
        incremental = spec.get("incremental")
        if incremental and incremental.get("type") == "response_cursor":
            return self._pull_response_cursor(stream, spec, incremental, cursor)
        return self._pull_pages(stream, spec, incremental, cursor)

    def _stream(self, name: str) -> dict[str, Any]:
        if name not in self.streams:
            raise ConnectorError(
                f"no stream {name!r} (configured: {', '.join(self.streams)})", permanent=True
            )
        return self.streams[name]

    def _request_for(self, spec: dict[str, Any], incremental: bool) -> dict[str, Any]:
        request = dict(spec)
        if incremental and "request" in spec.get("incremental", {}):
            request.update(spec["incremental"]["request"])
        request.setdefault("method", "GET")
        request.setdefault("pagination", {"type": "none"})
        request["params"] = dict(request.get("params", {}))
        request["body"] = dict(request["body"]) if "body" in request else None
        return request

    def _since_value(self, inc: dict[str, Any], moment: dt.datetime | None) -> Any:
        if moment is None:
            return inc.get("start")
        moment -= dt.timedelta(seconds=inc.get("lookback_seconds", 0))
        return format_time(max(moment, EPOCH), inc.get("format", "iso"))

    def _pull_pages(
        self,
        name: str,
        spec: dict[str, Any],
        inc: dict[str, Any] | None,
        cursor: str | None,
        *,
        probe: bool = False,
    ) -> Iterator[Page]:
        high = _HighWater(inc, cursor, name) if inc else None
        max_pages = spec.get("max_pages", self.max_pages)
        pages = 0
        while True:  # one pass per query; a sorted stream queries again at max_results
            since = high.moment if high else None
            # With a separate incremental request, only that one filters and sorts; the
            # first full pull walks the plain list in whatever order it comes.
            filtered = bool(inc) and (since is not None or "request" not in inc)
            in_order = filtered and high.sorted
            request = self._request_for(spec, since is not None)
            params, body = request["params"], request["body"]
            if filtered:
                value = self._since_value(inc, since)
                params = substitute(params, "cursor", value)
                body = substitute(body, "cursor", value) if body is not None else None
                target = body if inc.get("in") == "body" else params
                if "param" in inc and value is not None and target is not None:
                    target[inc["param"]] = value
            pager = _Pager(request["pagination"], name)
            results = 0
            while True:
                pages += 1
                url, page_params, page_body = pager.apply(
                    self.base_url + request["path"],
                    dict(params),
                    dict(body) if body is not None else None,
                )
                if probe:
                    page_params, page_body = self._probe(page_params, page_body, request)
                response = self._call(
                    request["method"],
                    url,
                    params=page_params,
                    body=page_body,
                    headers=spec.get("headers"),
                )
                data = self._json(response, request["method"], url)
                records = self._records(data, request.get("record_path", ""), name)
                has_more = False if probe else pager.advance(data, response, records)
                results += len(records)
                if high:
                    high.update(records)
                if "associations" in spec and not probe:
                    self._read_associations(spec, records)
                for record in records:
                    apply_transforms(record, spec.get("transform", {}))
                records = selected(records, spec.get("select"))
                # Unordered records: a later page may hold older ones, so the high-water
                # mark is safe only once the whole pull is landed.
                safe = high.value if high and (in_order or not has_more) else None
                yield Page(records, safe, has_more)
                if pager.loop:
                    raise pager.loop
                if not has_more:
                    return
                if pages >= max_pages:
                    if in_order:
                        return  # the stored cursor lets the next sync go on from here
                    raise ConnectorError(
                        f"{name}: stopped after {max_pages} pages with more to come; "
                        f"raise max_pages or add a sorted incremental cursor",
                        permanent=True,
                    )
                if in_order and inc.get("max_results") and results >= inc["max_results"]:
                    if high.moment == since:
                        raise ConnectorError(
                            f"{name}: more than {inc['max_results']} records share "
                            f"{inc['cursor_field']} {high.value}; cannot page past them",
                            permanent=True,
                        )
                    break  # query again from the high-water mark

    def _pull_response_cursor(
        self,
        name: str,
        spec: dict[str, Any],
        inc: dict[str, Any],
        cursor: str | None,
        *,
        probe: bool = False,
    ) -> Iterator[Page]:
        request = self._request_for(spec, False)
        max_pages = spec.get("max_pages", self.max_pages)
        start_param = inc.get("start_param", "start_time")
        sent = cursor
        seen: set[str] = set()
        for page_number in range(1, max_pages + 1):
            params = dict(request["params"])
            if sent:
                params[inc["param"]] = sent
            else:
                params[start_param] = inc.get("start", 0)
            url = self.base_url + request["path"]
            body = request["body"]
            if probe:
                params, body = self._probe(params, body, request)
            response = self._call(
                request["method"], url, params=params, body=body, headers=spec.get("headers")
            )
            data = self._json(response, request["method"], url)
            records = self._records(data, request.get("record_path", ""), name)
            following = dig(data, inc["cursor_path"])
            following = None if following in (None, "") else str(following)
            end = dig(data, inc.get("end_path", "end_of_stream"))
            has_more = not probe and following is not None and end is not None and not end
            for record in records:
                apply_transforms(record, spec.get("transform", {}))
            yield Page(selected(records, spec.get("select")), following, has_more)
            if not has_more:
                return
            if following == sent or following in seen:
                raise ConnectorError(
                    f"{name}: pagination loop (cursor {following!r} came back)", permanent=True
                )
            seen.add(following)
            sent = following
            if page_number == max_pages:
                return  # resumable: the stored cursor goes on from here

    def _read_associations(self, spec: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """Put each record's associations under ``associations.<type>.results`` (the shape
        of HubSpot's list API) from one batch read per associated type: search results
        carry none. The batch answers ``{"results": [{"from": {"id"}, "to": [{"toObjectId"}
        ]}]}`` (HubSpot CRM v4); a record it does not mention has no association."""
        inputs = [{"id": str(r["id"])} for r in records if r.get("id") not in (None, "")]
        if not inputs:
            return
        join = spec["associations"]
        for target in join["to"]:
            url = self.base_url + join["path"].replace("{to}", quote(target, safe=""))
            response = self._call("POST", url, body={"inputs": inputs}, headers=spec.get("headers"))
            data = self._json(response, "POST", url)
            results = dig(data, "results")
            found: dict[str, list[dict[str, str]]] = {}
            for result in results if isinstance(results, list) else []:
                to = result.get("to") if isinstance(result, dict) else None
                found[str(dig(result, "from.id"))] = [
                    {"id": str(t["toObjectId"])}
                    for t in to or []
                    if isinstance(t, dict) and t.get("toObjectId") not in (None, "")
                ]
            for record in records:
                ids = found.get(str(record.get("id")))
                if ids:
                    record.setdefault("associations", {})[target] = {"results": ids}

    def _probe(
        self, params: dict[str, Any], body: dict[str, Any] | None, request: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Ask for one record where the API has a page-size parameter."""
        pagination = request["pagination"]
        keys = {*SIZE_KEYS, pagination.get("size_param"), pagination.get("limit_param")}
        for target in (params, body or {}):
            for key in keys & set(target):
                target[key] = 1
        return params, body

    def _records(self, data: Any, path: str, where: str) -> list[dict[str, Any]]:
        records = dig(data, path)
        if records is None:
            keys = ", ".join(sorted(data)) if isinstance(data, dict) else type(data).__name__
            raise ConnectorError(
                f"{where}: the response has no {path!r} (found: {keys}); check record_path",
                permanent=True,
            )
        if not isinstance(records, list):
            raise ConnectorError(
                f"{where}: {path or 'the response'} is a {type(records).__name__}, not a list",
                permanent=True,
            )
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise ConnectorError(
                    f"{where}: record {index} is a {type(record).__name__}, not an object",
                    permanent=True,
                )
        return records

    # -- records -------------------------------------------------------------------------

    def transform_record(self, stream: str, record: dict[str, Any]) -> dict[str, Any]:
        """The stream's transforms applied to one record that arrived another way (a
        webhook), so it lands in the same shape as pulled records."""
        return apply_transforms(record, self._stream(stream).get("transform", {}))

    def is_deleted(self, stream: str, record: dict[str, Any]) -> bool:
        """Whether the source marks ``record`` deleted (by the stream's ``deleted_path``:
        truthy, or one of ``deleted_values``)."""
        spec = self._stream(stream)
        if "deleted_path" not in spec:
            return False
        value = dig(record, spec["deleted_path"])
        if "deleted_values" in spec:
            return value in spec["deleted_values"]
        return value is True or (isinstance(value, str) and value.lower() == "true")

    # -- HTTP ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        encoding: str = "json",
    ) -> Response:
        params = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        all_headers = {"Accept": "application/json", **self.config.get("headers", {})}
        all_headers.update(headers or {})
        data = None
        if body is not None:
            if encoding == "form":
                data = urlencode(form_encode(body)).encode()
                all_headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                all_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            auth_headers, auth_params = self._authenticate()
            query = urlencode({**params, **auth_params}, doseq=True)
            full_url = f"{url}{'&' if '?' in url else '?'}{query}" if query else url
            response = self.http.request(
                method, full_url, headers={**all_headers, **auth_headers}, body=data
            )
            oauth = self.auth["type"] == "oauth2_client_credentials"
            if response.status == 401 and oauth and attempt == 1:
                self._token = None  # expired or revoked early: refresh once, retry once
                continue
            break
        self._raise_for_status(response, method, url)
        return response

    def _raise_for_status(self, response: Response, method: str, url: str) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        where = f"{method} {urlsplit(url).path}"
        detail = self._redact(response.excerpt())
        retry_after = parse_retry_after(response.header("Retry-After"), now=self.now())
        if status == 429:
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            raise ConnectorError(
                f"{where}: rate limited (HTTP 429){wait}", retry_after=retry_after, status=429
            )
        if status >= 500 or status == 408:
            raise ConnectorError(
                f"{where}: HTTP {status} {detail}".rstrip(), retry_after=retry_after, status=status
            )
        if 300 <= status < 400:
            raise ConnectorError(
                f"{where}: redirected to {response.header('Location')} on another host; "
                f"set base_url to the final address",
                permanent=True,
                status=status,
            )
        hint = {
            401: " (check the credentials)",
            403: " (the credentials lack a permission or scope)",
            404: " (check base_url and the stream path)",
        }.get(status, "")
        raise ConnectorError(
            f"{where}: HTTP {status}{hint}: {detail}", permanent=True, status=status
        )

    def _json(self, response: Response, method: str, url: str) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise ConnectorError(
                f"{method} {urlsplit(url).path}: malformed JSON in the response: "
                f"{self._redact(response.excerpt(120))!r}",
                permanent=True,
            ) from None

    def _redact(self, text: str) -> str:
        for value in self.credentials.values():
            if isinstance(value, str) and len(value) >= 6:
                text = text.replace(value, "***")
        return text

    # -- authentication ------------------------------------------------------------------

    def _authenticate(self) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, query parameters) that authenticate one request."""
        auth, secrets = self.auth, self.credentials
        kind = auth["type"]
        if kind == "bearer":
            return {"Authorization": f"Bearer {secrets['token']}"}, {}
        if kind == "api_key":
            value = auth.get("prefix", "") + str(secrets["api_key"])
            if auth.get("in", "header") == "query":
                return {}, {auth["param"]: value}
            return {auth.get("header", "X-API-Key"): value}, {}
        if kind == "basic":
            username, password = (t.format_map(secrets) for t in _basic_templates(auth))
            pair = base64.b64encode(f"{username}:{password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}, {}
        if kind == "oauth2_client_credentials":
            return {"Authorization": f"Bearer {self._oauth_token()}"}, {}
        return {}, {}

    def _oauth_token(self) -> str:
        """The cached client-credentials token, fetched again shortly before it expires."""
        if self._token and self.clock() < self._token_expires:
            return self._token
        auth, secrets = self.auth, self.credentials
        token_url = auth["token_url"]
        if token_url.startswith("/"):
            token_url = self.base_url + token_url
        form = {"grant_type": "client_credentials", **auth.get("token_params", {})}
        if auth.get("scope"):
            form["scope"] = auth["scope"]
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if auth.get("client_auth", "basic") == "basic":
            # RFC 6749 §2.3.1: both parts form-encoded before the Basic scheme.
            client_id, client_secret = secrets["client_id"], secrets["client_secret"]
            pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=secrets["client_id"], client_secret=secrets["client_secret"])
        requested_at = self.clock()
        response = self.http.request(
            "POST", token_url, headers=headers, body=urlencode(form).encode()
        )
        if response.status in (400, 401, 403):
            raise ConnectorError(
                f"OAuth token request refused (HTTP {response.status}): "
                f"{self._redact(response.excerpt())}",
                permanent=True,
                status=response.status,
            )
        self._raise_for_status(response, "POST", token_url)
        data = self._json(response, "POST", token_url)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ConnectorError("OAuth token response has no access_token", permanent=True)
        lifetime = data.get("expires_in")
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
            # Refresh a little early so a token never expires in flight.
            self._token_expires = requested_at + lifetime - min(60.0, lifetime / 10)
        else:
            self._token_expires = float("inf")  # until the server answers 401
        self._token = token
        return token

    # -- push ----------------------------------------------------------------------------

    def push(self, change: Change) -> PushResult:
        """Create, update or delete one record in the target system.

        The change's idempotency key goes out as ``Idempotency-Key`` so a retried push
        never creates twice where the API honours it.
        """
        spec = self.config.get("push", {}).get(change.stream)
        if spec is None or change.operation not in spec:
            raise ConnectorError(
                f"no push configured for {change.operation} on {change.stream}", permanent=True
            )
        request = spec[change.operation]
        path = request["path"]
        if change.operation != "create" and not change.external_id:
            raise ConnectorError(
                f"{change.operation} on {change.stream} needs the target's record id",
                permanent=True,
            )
        prefix = spec.get("id_prefix", "")
        source_id = _unprefixed(change.external_id, prefix, change.stream)
        if "{id}" in path:
            path = path.replace("{id}", quote(str(source_id), safe=""))
        method = request.get("method", "POST" if change.operation == "create" else "PATCH")
        body: dict[str, Any] | None = None
        if change.operation != "delete":
            body = dict(change.data)
            if "id_field" in request:
                body[request["id_field"]] = source_id
            if "wrap" in spec:
                body = {spec["wrap"]: body}
        headers = {"Idempotency-Key": change.idempotency_key} if change.idempotency_key else {}
        url = self.base_url + path
        response = self._call(
            method, url, body=body, headers=headers, encoding=spec.get("encoding", "json")
        )
        try:
            data: Any = response.json() if response.body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            data = {}  # the change went through; an odd answer must not make it retry
        external_id = dig(data, spec.get("id_path", "id")) if isinstance(data, dict) else None
        if external_id in (None, ""):
            return PushResult(
                change.external_id, data if isinstance(data, dict) else {"data": data}
            )
        return PushResult(
            prefix + str(external_id), data if isinstance(data, dict) else {"data": data}
        )

    # -- webhooks ------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> bool:
        """True only for a body signed with the webhook secret within the tolerance.

        The signature is HMAC-SHA256 over ``f"{t}.{body}"`` sent as ``t=<unix>,v1=<hex>``
        (several ``v1`` values allowed, as Stripe does while rolling a secret).
        """
        webhook = self.config.get("webhook")
        if not webhook:
            return False
        secrets = self.credentials.get("webhook_secret")
        secrets = [secrets] if isinstance(secrets, str) else list(secrets or [])
        if not any(secrets):
            logger.warning("webhook received but no webhook_secret is configured")
            return False
        scheme = webhook.get("scheme", "concord_v1")
        name = webhook.get("signature_header", WEBHOOK_SCHEMES[scheme]).lower()
        headers = {k.lower(): v for k, v in request.headers.items()}
        stamp, signatures = None, []
        for part in headers.get(name, "").split(","):
            key, _, value = part.strip().partition("=")
            if key == "t":
                stamp = value
            elif key == "v1" and value:
                signatures.append(value)
        if not stamp or not stamp.isdigit() or not signatures:
            return False
        if abs(self.now() - int(stamp)) > webhook.get("tolerance_seconds", 300):
            return False  # a replay of an old delivery, or a clock far off
        signed = stamp.encode() + b"." + request.body
        matched = False
        for secret in filter(None, secrets):
            expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            for signature in signatures:
                # Compare every candidate, so timing says nothing about which one matched.
                matched |= hmac.compare_digest(expected, signature)
        return matched

    # -- check ---------------------------------------------------------------------------

    def check(self) -> str:
        """Fetch the first page of the first stream, one record where the API allows."""
        name = next(iter(self.streams))
        spec = self.streams[name]
        incremental = spec.get("incremental")
        started = self.clock()
        if incremental and incremental.get("type") == "response_cursor":
            pages = self._pull_response_cursor(name, spec, incremental, None, probe=True)
        else:
            pages = self._pull_pages(name, spec, incremental, None, probe=True)
        page = next(pages)
        pages.close()
        elapsed = (self.clock() - started) * 1000
        return f"OK: {_plural(len(page.records), 'record')} from {name} in {elapsed:.0f} ms"
