"""The declarative REST connector over real HTTP on 127.0.0.1.

Most tests route a few paths of a tiny ThreadingHTTPServer to handlers that answer in the
documented shapes of the APIs each style comes from (HubSpot, Stripe, Zendesk, GitHub);
the last ones run the presets against the simulators (integrations/simulators).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from integrations.connectors.base import Change, ConnectorError, WebhookRequest
from integrations.connectors.presets import PRESETS, preset_config
from integrations.connectors.registry import build_connector
from integrations.connectors.rest import (
    ConnectorConfigError,
    RestConnector,
    apply_transforms,
    sign_webhook,
)
from integrations.pipeline.mapping import Mapping
from integrations.simulators import DEFAULT_CREDENTIALS, signature_header, start_simulator

# -- a tiny API server -------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Handler = Callable[[Seen], Any]


class FakeAPI:
    def __init__(self, url: str) -> None:
        self.url = url
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []

    def on(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


class _RequestHandler(BaseHTTPRequestHandler):
    api: FakeAPI

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(
            method=self.command,
            path=unquote(parts.path),
            query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        self.api.seen.append(seen)
        handler = self.api.routes.get((self.command, seen.path))
        reply = handler(seen) if handler else Reply(404, {"message": "no such route"})
        if not isinstance(reply, Reply):
            reply = Reply(body=reply)
        time.sleep(reply.delay)
        body = reply.body
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture
def api():
    handler = type("Handler", (_RequestHandler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    handler.api = FakeAPI(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield handler.api
    server.shutdown()
    server.server_close()


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def connector(
    api: FakeAPI, streams: dict[str, Any], credentials: dict | None = None, **config: Any
) -> RestConnector:
    return RestConnector({"base_url": api.url, "streams": streams, **config}, credentials or {})


def pull_all(conn: RestConnector, stream: str, cursor: str | None = None):
    pages = list(conn.pull(stream, cursor))
    return [r for p in pages for r in p.records], pages


RECORDS = [
    {"id": str(i), "updated": f"2024-01-01T00:{i:02d}:00Z", "created": 1_704_067_200 + 60 * i}
    for i in range(1, 26)
]
IDS = [r["id"] for r in RECORDS]


# -- pagination: every style yields every record exactly once -----------------------------


def _cursor_handler(seen: Seen) -> dict:
    start = int(seen.query.get("after", 0))
    answer: dict[str, Any] = {"results": RECORDS[start : start + 10]}
    if start + 10 < len(RECORDS):
        answer["paging"] = {"next": {"after": str(start + 10)}}
    return answer


def _body_cursor_handler(seen: Seen) -> dict:
    start = int(seen.json.get("after", 0))
    answer: dict[str, Any] = {"results": RECORDS[start : start + 10], "total": len(RECORDS)}
    if start + 10 < len(RECORDS):
        answer["paging"] = {"next": {"after": str(start + 10)}}
    return answer


def _page_handler(seen: Seen) -> dict:
    page, size = int(seen.query["page"]), int(seen.query["per_page"])
    return {"items": RECORDS[(page - 1) * size : page * size]}


def _offset_handler(seen: Seen) -> dict:
    offset, limit = int(seen.query["offset"]), int(seen.query["limit"])
    return {"data": {"rows": RECORDS[offset : offset + limit]}}


def _link_handler(seen: Seen) -> Reply:
    page = int(seen.query.get("page", 1))
    links = [f'<{"/items"}?page=1>; rel="first"']
    if page * 10 < len(RECORDS):
        # Relative, with several relations in one value, as RFC 8288 allows.
        links.append(f'</items?page={page + 1}&per_page=10>; rel="next nofollow"')
    return Reply(body=RECORDS[(page - 1) * 10 : page * 10], headers={"Link": ", ".join(links)})


def _next_url_handler(api: FakeAPI) -> Handler:
    def handle(seen: Seen) -> dict:
        page = int(seen.query.get("page", 1))
        following = f"{api.url}/users.json?page={page + 1}" if page * 10 < len(RECORDS) else None
        return {"users": RECORDS[(page - 1) * 10 : page * 10], "next_page": following}

    return handle


def _starting_after_handler(seen: Seen) -> dict:
    after = seen.query.get("starting_after")
    start = IDS.index(after) + 1 if after else 0
    limit = int(seen.query.get("limit", 10))
    return {
        "object": "list",
        "data": RECORDS[start : start + limit],
        "has_more": start + limit < len(RECORDS),
    }


PAGINATION_CASES = {
    "cursor": (
        {
            "path": "/objects",
            "record_path": "results",
            "pagination": {"type": "cursor", "param": "after", "next_path": "paging.next.after"},
        },
        "GET",
        "/objects",
        lambda api: _cursor_handler,
    ),
    "cursor in body": (
        {
            "path": "/search",
            "method": "POST",
            "body": {"limit": 10},
            "record_path": "results",
            "pagination": {
                "type": "cursor",
                "param": "after",
                "next_path": "paging.next.after",
                "in": "body",
            },
        },
        "POST",
        "/search",
        lambda api: _body_cursor_handler,
    ),
    "page": (
        {
            "path": "/items",
            "record_path": "items",
            "pagination": {"type": "page", "param": "page", "size_param": "per_page", "size": 10},
        },
        "GET",
        "/items",
        lambda api: _page_handler,
    ),
    "offset": (
        {
            "path": "/rows",
            "record_path": "data.rows",
            "pagination": {
                "type": "offset",
                "param": "offset",
                "limit_param": "limit",
                "limit": 10,
            },
        },
        "GET",
        "/rows",
        lambda api: _offset_handler,
    ),
    "link": (
        {"path": "/items", "params": {"per_page": 10}, "pagination": {"type": "link"}},
        "GET",
        "/items",
        lambda api: _link_handler,
    ),
    "next_url": (
        {
            "path": "/users.json",
            "record_path": "users",
            "pagination": {"type": "next_url", "next_path": "next_page"},
        },
        "GET",
        "/users.json",
        _next_url_handler,
    ),
    "starting_after": (
        {
            "path": "/v1/customers",
            "params": {"limit": 10},
            "record_path": "data",
            "pagination": {
                "type": "starting_after",
                "param": "starting_after",
                "id_field": "id",
                "has_more_path": "has_more",
            },
        },
        "GET",
        "/v1/customers",
        lambda api: _starting_after_handler,
    ),
}


@pytest.mark.parametrize("style", PAGINATION_CASES)
def test_every_pagination_style_yields_every_record_once(api, style):
    stream, method, path, make_handler = PAGINATION_CASES[style]
    api.on(method, path, make_handler(api))
    records, pages = pull_all(connector(api, {"things": stream}), "things")
    assert [r["id"] for r in records] == IDS
    assert len(pages) in (3, 4)  # 10 + 10 + 5 (and an empty page for page / offset)
    assert [p.has_more for p in pages][-1] is False
    assert all(p.has_more for p in pages[:-1])
    assert all(p.cursor is None for p in pages)  # no incremental: nothing to store


def test_page_style_stops_when_next_path_says_none(api):
    def handle(seen: Seen) -> dict:
        page = int(seen.query["page"])
        return {
            "items": RECORDS[(page - 1) * 10 : page * 10],
            "next_page": page * 10 < len(RECORDS) or None,
        }

    api.on("GET", "/items", handle)
    conn = connector(
        api,
        {
            "things": {
                "path": "/items",
                "record_path": "items",
                "pagination": {
                    "type": "page",
                    "size_param": "per_page",
                    "size": 10,
                    "next_path": "next_page",
                },
            }
        },
    )
    records, _ = pull_all(conn, "things")
    assert [r["id"] for r in records] == IDS
    assert len(api.calls("/items")) == 3  # no extra request for an empty page


def test_single_request_stream(api):
    api.on("GET", "/all", lambda s: {"data": RECORDS[:3]})
    records, pages = pull_all(
        connector(api, {"all": {"path": "/all", "record_path": "data"}}), "all"
    )
    assert len(records) == 3 and len(pages) == 1 and not pages[0].has_more


# -- loops and bounds --------------------------------------------------------------------


def test_repeated_next_token_is_a_permanent_pagination_loop(api):
    api.on(
        "GET",
        "/objects",
        lambda s: {"results": [RECORDS[0]], "paging": {"next": {"after": "same"}}},
    )
    conn = connector(
        api,
        {
            "o": {
                "path": "/objects",
                "record_path": "results",
                "pagination": {
                    "type": "cursor",
                    "param": "after",
                    "next_path": "paging.next.after",
                },
            }
        },
    )
    pages = conn.pull("o", None)
    assert len(next(pages).records) == 1
    assert len(next(pages).records) == 1  # the first reuse of "same" is still fetched
    with pytest.raises(ConnectorError) as caught:
        next(pages)
    assert caught.value.permanent and "pagination loop" in caught.value.message
    assert len(api.calls("/objects")) == 2


def test_page_that_ignores_the_page_parameter_is_a_loop(api):
    api.on("GET", "/items", lambda s: {"items": RECORDS[:10]})
    conn = connector(
        api, {"i": {"path": "/items", "record_path": "items", "pagination": {"type": "page"}}}
    )
    with pytest.raises(ConnectorError, match="pagination loop") as caught:
        list(conn.pull("i", None))
    assert caught.value.permanent
    assert len(api.calls("/items")) == 2


def test_max_pages_bounds_an_endless_stream(api):
    api.on("GET", "/items", lambda s: {"items": [{"id": s.query["page"]}]})
    conn = connector(
        api,
        {
            "i": {
                "path": "/items",
                "record_path": "items",
                "max_pages": 5,
                "pagination": {"type": "page"},
            }
        },
    )
    with pytest.raises(ConnectorError, match="stopped after 5 pages") as caught:
        list(conn.pull("i", None))
    assert caught.value.permanent
    assert len(api.calls("/items")) == 5


def test_next_url_on_another_host_is_refused(api):
    api.on(
        "GET",
        "/users.json",
        lambda s: {"users": [RECORDS[0]], "next_page": "http://evil.example/steal"},
    )
    conn = connector(
        api,
        {
            "u": {
                "path": "/users.json",
                "record_path": "users",
                "pagination": {"type": "next_url", "next_path": "next_page"},
            }
        },
        {"token": "secret-token"},
        auth={"type": "bearer"},
    )
    with pytest.raises(ConnectorError, match="another host") as caught:
        list(conn.pull("u", None))
    assert caught.value.permanent


# -- incremental -------------------------------------------------------------------------


def _sorted_handler(seen: Seen) -> dict:
    """HubSpot-search-like: filter updated >= since, ascending, 10 per page."""
    since = seen.query.get("since")
    rows = [r for r in RECORDS if since is None or r["updated"] >= since]
    start = int(seen.query.get("after", 0))
    answer: dict[str, Any] = {"results": rows[start : start + 10]}
    if start + 10 < len(rows):
        answer["paging"] = {"next": {"after": str(start + 10)}}
    return answer


SORTED_STREAM = {
    "path": "/objects",
    "record_path": "results",
    "pagination": {"type": "cursor", "param": "after", "next_path": "paging.next.after"},
    "incremental": {"cursor_field": "updated", "param": "since", "format": "iso", "sorted": True},
}


def test_high_water_mark_of_a_sorted_stream_advances_page_by_page(api):
    api.on("GET", "/objects", _sorted_handler)
    conn = connector(api, {"o": SORTED_STREAM})
    _, pages = pull_all(conn, "o")
    assert [p.cursor for p in pages] == [
        "2024-01-01T00:10:00Z",
        "2024-01-01T00:20:00Z",
        "2024-01-01T00:25:00Z",
    ]
    assert "since" not in api.seen[0].query  # first sync: everything

    api.seen.clear()
    records, pages = pull_all(conn, "o", "2024-01-01T00:20:00Z")
    assert api.seen[0].query["since"] == "2024-01-01T00:20:00Z"
    assert [r["id"] for r in records] == [str(i) for i in range(20, 26)]
    assert pages[-1].cursor == "2024-01-01T00:25:00Z"


def test_high_water_mark_never_goes_back_and_lookback_widens_the_filter(api):
    api.on("GET", "/objects", _sorted_handler)
    stream = {
        **SORTED_STREAM,
        "incremental": {**SORTED_STREAM["incremental"], "lookback_seconds": 300},
    }
    records, pages = pull_all(connector(api, {"o": stream}), "o", "2024-01-01T00:24:00Z")
    assert api.seen[0].query["since"] == "2024-01-01T00:19:00Z"
    assert [r["id"] for r in records] == [str(i) for i in range(19, 26)]
    assert pages[-1].cursor == "2024-01-01T00:25:00Z"

    api.seen.clear()
    _, pages = pull_all(connector(api, {"o": stream}), "o", "2024-01-01T01:00:00Z")
    assert pages[-1].cursor == "2024-01-01T01:00:00Z"  # older records never move it back


def test_unsorted_stream_stores_its_high_water_mark_only_at_the_end(api):
    """Stripe lists newest first: after page one the newest record is already seen, but
    older ones on later pages are not landed yet."""

    def handle(seen: Seen) -> dict:
        newest_first = [
            r for r in reversed(RECORDS) if r["created"] >= int(seen.query.get("created[gte]", 0))
        ]
        after = seen.query.get("starting_after")
        start = [r["id"] for r in newest_first].index(after) + 1 if after else 0
        return {
            "data": newest_first[start : start + 10],
            "has_more": start + 10 < len(newest_first),
        }

    api.on("GET", "/v1/charges", handle)
    stream = {
        "path": "/v1/charges",
        "record_path": "data",
        "pagination": {"type": "starting_after"},
        "incremental": {"cursor_field": "created", "param": "created[gte]", "format": "unix"},
    }
    conn = connector(api, {"charges": stream})
    records, pages = pull_all(conn, "charges")
    assert len(records) == 25
    assert [p.cursor for p in pages] == [None, None, str(RECORDS[-1]["created"])]

    api.seen.clear()
    records, _ = pull_all(conn, "charges", str(RECORDS[21]["created"]))
    assert api.seen[0].query["created[gte]"] == str(RECORDS[21]["created"])
    assert sorted(r["id"] for r in records) == ["22", "23", "24", "25"]


@pytest.mark.parametrize(
    ("fmt", "sent"),
    [("iso", "2024-01-01T00:20:00Z"), ("unix", "1704068400"), ("unix_ms", "1704068400000")],
)
def test_cursor_formats(api, fmt, sent):
    api.on("GET", "/objects", lambda s: {"results": []})
    stream = {**SORTED_STREAM, "incremental": {**SORTED_STREAM["incremental"], "format": fmt}}
    pages = list(connector(api, {"o": stream}).pull("o", "2024-01-01T00:20:00Z"))
    assert api.seen[0].query["since"] == sent
    assert pages[0].cursor == "2024-01-01T00:20:00Z"


def test_separate_incremental_request_and_restart_after_max_results(api):
    """HubSpot: list for the first sync, search (POST, filter in the body, sorted, capped
    at max_results per query) once there is a cursor."""
    many = [
        {"id": str(i), "updatedAt": f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00Z"}
        for i in range(1, 46)
    ]

    def search(seen: Seen) -> Any:
        query = seen.json
        since = int(query["filterGroups"][0]["filters"][0]["value"])
        rows = [
            r for r in many if dt.datetime.fromisoformat(r["updatedAt"]).timestamp() * 1000 >= since
        ]
        start = int(query.get("after", 0))
        if start >= 20:
            return Reply(400, {"message": "paging past the result limit"})
        answer: dict[str, Any] = {"results": rows[start : start + 10]}
        if start + 10 < len(rows):
            answer["paging"] = {"next": {"after": str(start + 10)}}
        return answer

    api.on("GET", "/objects", lambda s: {"results": many[:3]})
    api.on("POST", "/objects/search", search)
    stream = {
        "path": "/objects",
        "record_path": "results",
        "pagination": {"type": "cursor", "param": "after", "next_path": "paging.next.after"},
        "incremental": {
            "cursor_field": "updatedAt",
            "format": "unix_ms",
            "sorted": True,
            "max_results": 20,
            "request": {
                "path": "/objects/search",
                "method": "POST",
                "body": {
                    "filterGroups": [
                        {
                            "filters": [
                                {"propertyName": "modified", "operator": "GTE", "value": "{cursor}"}
                            ]
                        }
                    ],
                    "limit": 10,
                },
                "pagination": {
                    "type": "cursor",
                    "param": "after",
                    "next_path": "paging.next.after",
                    "in": "body",
                },
            },
        },
    }
    conn = connector(api, {"o": stream})
    _, pages = pull_all(conn, "o")
    assert api.seen[-1].path == "/objects" and pages[-1].cursor == "2024-01-01T00:03:00Z"

    api.seen.clear()
    records, pages = pull_all(conn, "o", "2024-01-01T00:03:00Z")
    ids = [r["id"] for r in records]
    assert set(ids) == {str(i) for i in range(3, 46)}  # restarts repeat at most a boundary
    assert pages[-1].cursor == "2024-01-01T00:45:00Z"
    assert all(s.path == "/objects/search" for s in api.seen)
    assert "after" not in api.seen[0].json  # no token on a first page
    values = [s.json["filterGroups"][0]["filters"][0]["value"] for s in api.seen]
    assert values[0] == "1704067380000" and len(set(values)) == 3  # two restarts


def _zendesk_export(seen: Seen) -> dict:
    position = int(seen.query["cursor"]) if "cursor" in seen.query else 0
    if "cursor" not in seen.query:
        assert seen.query["start_time"] == "0"
    rows = RECORDS[position : position + 10]
    following = position + len(rows)
    return {
        "tickets": rows,
        "after_cursor": str(following),
        "end_of_stream": following >= len(RECORDS),
    }


ZENDESK_TICKETS = {
    "path": "/api/v2/incremental/tickets/cursor.json",
    "record_path": "tickets",
    "incremental": {
        "type": "response_cursor",
        "start_param": "start_time",
        "param": "cursor",
        "cursor_path": "after_cursor",
        "end_path": "end_of_stream",
    },
}


def test_response_cursor_is_stored_page_by_page_and_resumed(api):
    api.on("GET", "/api/v2/incremental/tickets/cursor.json", _zendesk_export)
    conn = connector(api, {"tickets": ZENDESK_TICKETS})
    records, pages = pull_all(conn, "tickets")
    assert [r["id"] for r in records] == IDS
    assert [(p.cursor, p.has_more) for p in pages] == [("10", True), ("20", True), ("25", False)]
    RECORDS.append({"id": "26"})
    try:
        records, pages = pull_all(conn, "tickets", "25")
    finally:
        RECORDS.pop()
    assert [r["id"] for r in records] == ["26"] and pages[-1].cursor == "26"


def test_response_cursor_that_comes_back_is_a_loop(api):
    api.on(
        "GET",
        "/api/v2/incremental/tickets/cursor.json",
        lambda s: {"tickets": [], "after_cursor": "x", "end_of_stream": False},
    )
    with pytest.raises(ConnectorError, match="pagination loop"):
        list(connector(api, {"tickets": ZENDESK_TICKETS}).pull("tickets", None))


# -- authentication ----------------------------------------------------------------------


def _echo_auth(seen: Seen) -> dict:
    return {
        "data": [
            {
                "id": "1",
                "auth": seen.headers.get("authorization"),
                "key": seen.headers.get("x-api-key"),
                "q": seen.query.get("api_key"),
            }
        ]
    }


ECHO = {"e": {"path": "/echo", "record_path": "data"}}


@pytest.mark.parametrize(
    ("auth", "credentials", "expected"),
    [
        ({"type": "none"}, {}, {"auth": None, "key": None, "q": None}),
        ({"type": "bearer"}, {"token": "tok-123"}, {"auth": "Bearer tok-123"}),
        ({"type": "api_key"}, {"api_key": "k-1"}, {"key": "k-1", "auth": None}),
        (
            {"type": "api_key", "in": "query", "param": "api_key"},
            {"api_key": "k-2"},
            {"q": "k-2", "key": None},
        ),
        ({"type": "basic"}, {"username": "ann", "password": "pw"}, {"auth": "Basic YW5uOnB3"}),
        (
            {"type": "basic", "username": "{email}/token", "password": "{api_token}"},
            {"email": "ann@example.com", "api_token": "zd"},
            {"auth": "Basic YW5uQGV4YW1wbGUuY29tL3Rva2VuOnpk"},
        ),
    ],
    ids=["none", "bearer", "api_key header", "api_key query", "basic", "zendesk token"],
)
def test_auth_types(api, auth, credentials, expected):
    api.on("GET", "/echo", _echo_auth)
    records, _ = pull_all(connector(api, ECHO, credentials, auth=auth), "e")
    for key, value in expected.items():
        assert records[0][key] == value


class TokenServer:
    def __init__(self, api: FakeAPI, expires_in: int = 3600) -> None:
        self.issued = 0
        self.expires_in = expires_in
        self.valid: set[str] = set()
        api.on("POST", "/oauth/token", self.token)
        api.on("GET", "/echo", self.protected)

    def token(self, seen: Seen) -> Any:
        if seen.headers.get("authorization") != "Basic Y2lkOmNzZWNyZXQ=":  # cid:csecret
            return Reply(401, {"error": "invalid_client"})
        assert seen.form == {"grant_type": "client_credentials", "scope": "read"}
        self.issued += 1
        token = f"t{self.issued}"
        self.valid.add(token)
        return {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}

    def protected(self, seen: Seen) -> Any:
        token = (seen.headers.get("authorization") or "").removeprefix("Bearer ")
        if token not in self.valid:
            return Reply(401, {"error": "invalid_token"})
        return {"data": [{"id": "1", "token": token}]}


OAUTH = {"type": "oauth2_client_credentials", "token_url": "/oauth/token", "scope": "read"}
OAUTH_CREDENTIALS = {"client_id": "cid", "client_secret": "csecret"}


def test_oauth_token_is_cached_and_refreshed_before_expiry(api):
    tokens = TokenServer(api, expires_in=600)
    clock = FakeClock()
    conn = RestConnector(
        {"base_url": api.url, "streams": ECHO, "auth": OAUTH}, OAUTH_CREDENTIALS, clock=clock
    )
    assert pull_all(conn, "e")[0][0]["token"] == "t1"
    clock.t += 500
    assert pull_all(conn, "e")[0][0]["token"] == "t1"  # cached
    clock.t += 50  # within a minute of expiry: refreshed early
    assert pull_all(conn, "e")[0][0]["token"] == "t2"
    assert tokens.issued == 2


def test_oauth_401_refreshes_once_and_retries_once(api):
    tokens = TokenServer(api)
    conn = RestConnector({"base_url": api.url, "streams": ECHO, "auth": OAUTH}, OAUTH_CREDENTIALS)
    assert pull_all(conn, "e")[0][0]["token"] == "t1"
    tokens.valid.clear()  # revoked server-side before its expiry
    assert pull_all(conn, "e")[0][0]["token"] == "t2"
    assert tokens.issued == 2

    api.on("GET", "/echo", lambda s: Reply(401, {"error": "invalid_token"}))
    api.seen.clear()
    with pytest.raises(ConnectorError) as caught:
        pull_all(conn, "e")
    assert caught.value.permanent and caught.value.status == 401
    assert [s.path for s in api.seen] == ["/echo", "/oauth/token", "/echo"]


def test_oauth_refused_client_is_permanent(api):
    TokenServer(api)
    conn = RestConnector(
        {"base_url": api.url, "streams": ECHO, "auth": OAUTH},
        {"client_id": "cid", "client_secret": "wrong-secret"},
    )
    with pytest.raises(ConnectorError, match="OAuth token request refused") as caught:
        pull_all(conn, "e")
    assert caught.value.permanent and "wrong-secret" not in caught.value.message


# -- errors ------------------------------------------------------------------------------


def _raise_for(api: FakeAPI, reply: Reply, **config: Any) -> ConnectorError:
    api.on("GET", "/echo", lambda s: reply)
    conn = RestConnector(
        {"base_url": api.url, "streams": ECHO, **config}, {}, now=lambda: 1_700_000_000.0
    )
    with pytest.raises(ConnectorError) as caught:
        pull_all(conn, "e")
    return caught.value


def test_429_carries_retry_after_seconds(api):
    error = _raise_for(api, Reply(429, {"message": "slow down"}, {"Retry-After": "7"}))
    assert (error.permanent, error.retry_after, error.status) == (False, 7.0, 429)


def test_429_carries_retry_after_http_date(api):
    later = formatdate(1_700_000_000 + 120, usegmt=True)
    error = _raise_for(api, Reply(429, {}, {"Retry-After": later}))
    assert (error.permanent, error.retry_after) == (False, 120.0)


def test_429_without_retry_after(api):
    error = _raise_for(api, Reply(429, {}))
    assert (error.permanent, error.retry_after, error.status) == (False, None, 429)


def test_5xx_is_transient(api):
    error = _raise_for(api, Reply(503, "upstream down", {"Content-Type": "text/plain"}))
    assert (error.permanent, error.status) == (False, 503)
    assert "upstream down" in error.message


def test_timeout_is_transient(api):
    error = _raise_for(api, Reply(body={"data": []}, delay=0.6), timeout=0.2)
    assert not error.permanent and "timed out" in error.message


def test_connection_refused_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = RestConnector({"base_url": f"http://127.0.0.1:{port}", "streams": ECHO}, {})
    with pytest.raises(ConnectorError) as caught:
        pull_all(conn, "e")
    assert not caught.value.permanent and "cannot connect" in caught.value.message


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_permanent_with_the_body(api, status):
    error = _raise_for(api, Reply(status, {"message": f"nope {status}"}))
    assert error.permanent and error.status == status
    assert f"HTTP {status}" in error.message and f"nope {status}" in error.message


def test_error_messages_never_show_credentials(api):
    api.on("GET", "/echo", lambda s: Reply(401, {"message": f"bad token {s.query['key']}"}))
    conn = connector(
        api,
        ECHO,
        {"api_key": "super-secret-key"},
        auth={"type": "api_key", "in": "query", "param": "key"},
    )
    with pytest.raises(ConnectorError) as caught:
        pull_all(conn, "e")
    assert "super-secret-key" not in caught.value.message and "***" in caught.value.message


def test_malformed_json_is_permanent(api):
    error = _raise_for(api, Reply(body="{not json", headers={"Content-Type": "text/html"}))
    assert error.permanent and "malformed JSON" in error.message


def test_missing_record_path_is_permanent(api):
    error = _raise_for(api, Reply(body={"results": []}))
    assert error.permanent and "'data'" in error.message and "results" in error.message


def test_records_that_are_not_objects_are_permanent(api):
    error = _raise_for(api, Reply(body={"data": [1, 2]}))
    assert error.permanent and "not an object" in error.message


# -- check -------------------------------------------------------------------------------


def test_check_asks_for_one_record(api):
    api.on("GET", "/v1/customers", _starting_after_handler)
    conn = connector(api, {"customers": PAGINATION_CASES["starting_after"][0]})
    assert conn.check().startswith("OK: 1 record from customers in ")
    assert [s.query.get("limit") for s in api.seen] == ["1"]


def test_check_raises_on_failure(api):
    api.on("GET", "/echo", lambda s: Reply(401, {"message": "bad key"}))
    with pytest.raises(ConnectorError, match="check the credentials"):
        connector(api, ECHO).check()


# -- push --------------------------------------------------------------------------------

PUSH = {
    "companies": {
        "create": {"path": "/crm/v3/objects/companies", "method": "POST"},
        "update": {"path": "/crm/v3/objects/companies/{id}", "method": "PATCH"},
        "delete": {"path": "/crm/v3/objects/companies/{id}", "method": "DELETE"},
        "wrap": "properties",
    },
    "customers": {
        "create": {"path": "/v1/customers"},
        "update": {"path": "/v1/customers/{id}", "method": "POST"},
        "encoding": "form",
        "id_path": "customer.id",
    },
}


def test_push_create_and_update_with_idempotency_key(api):
    api.on("POST", "/crm/v3/objects/companies", lambda s: Reply(201, {"id": "512", **s.json}))
    api.on("PATCH", "/crm/v3/objects/companies/512", lambda s: {"id": "512", **s.json})
    conn = connector(api, ECHO, push=PUSH)
    created = conn.push(Change("companies", "create", None, {"name": "Acme"}, "key-1"))
    assert created.external_id == "512"
    assert created.response["properties"] == {"name": "Acme"}
    updated = conn.push(Change("companies", "update", "512", {"phone": "+1"}, "key-2"))
    assert updated.external_id == "512"
    assert [(s.method, s.headers.get("idempotency-key"), s.json) for s in api.seen] == [
        ("POST", "key-1", {"properties": {"name": "Acme"}}),
        ("PATCH", "key-2", {"properties": {"phone": "+1"}}),
    ]


def test_push_form_encoded_with_nested_id_path(api):
    api.on("POST", "/v1/customers/cus 1", lambda s: {"customer": {"id": "cus 1"}})
    conn = connector(api, ECHO, push=PUSH)
    result = conn.push(
        Change("customers", "update", "cus 1", {"email": "a@b.co", "metadata": {"hub": 7}}, "k")
    )
    assert result.external_id == "cus 1"
    assert api.seen[0].form == {"email": "a@b.co", "metadata[hub]": "7"}


def test_push_delete_and_errors(api):
    api.on("DELETE", "/crm/v3/objects/companies/9", lambda s: Reply(204, b""))
    conn = connector(api, ECHO, push=PUSH)
    assert conn.push(Change("companies", "delete", "9")).external_id == "9"
    with pytest.raises(ConnectorError, match="no push configured") as caught:
        conn.push(Change("invoices", "create", None, {}))
    assert caught.value.permanent
    with pytest.raises(ConnectorError, match="needs the target's record id"):
        conn.push(Change("companies", "update", None, {"name": "x"}))
    api.on("POST", "/crm/v3/objects/companies", lambda s: Reply(409, {"message": "exists"}))
    with pytest.raises(ConnectorError) as caught:
        conn.push(Change("companies", "create", None, {"name": "x"}))
    assert caught.value.permanent and caught.value.status == 409


# -- webhooks ----------------------------------------------------------------------------

BODY = b'{"id": "evt_1", "type": "customer.updated", "data": {"object": {"id": "cus_1"}}}'
NOW = 1_700_000_000


def webhook_connector(scheme: str = "concord_v1", secret: Any = "whsec_test") -> RestConnector:
    config = {
        "base_url": "https://api.example.com",
        "streams": ECHO,
        "webhook": {"scheme": scheme, "tolerance_seconds": 300},
    }
    return RestConnector(config, {"webhook_secret": secret}, now=lambda: NOW)


def test_webhook_good_signature_is_accepted():
    header = sign_webhook("whsec_test", BODY, NOW - 10)
    request = WebhookRequest({"x-concord-signature": header}, BODY)
    assert webhook_connector().verify_webhook(request)


def test_webhook_bad_signature_tampered_body_and_old_timestamp_are_rejected():
    conn = webhook_connector()
    good = sign_webhook("whsec_test", BODY, NOW)
    assert not conn.verify_webhook(
        WebhookRequest({"x-concord-signature": sign_webhook("other", BODY, NOW)}, BODY)
    )
    assert not conn.verify_webhook(
        WebhookRequest({"x-concord-signature": good}, BODY.replace(b"cus_1", b"cus_2"))
    )
    assert not conn.verify_webhook(
        WebhookRequest({"x-concord-signature": sign_webhook("whsec_test", BODY, NOW - 301)}, BODY)
    )
    assert not conn.verify_webhook(
        WebhookRequest({"x-concord-signature": sign_webhook("whsec_test", BODY, NOW + 301)}, BODY)
    )
    assert not conn.verify_webhook(WebhookRequest({}, BODY))
    assert not conn.verify_webhook(WebhookRequest({"x-concord-signature": "garbage"}, BODY))
    # A signature copied onto another timestamp does not verify either.
    stolen = good.split(",")[1]
    assert not conn.verify_webhook(
        WebhookRequest({"x-concord-signature": f"t={NOW - 5},{stolen}"}, BODY)
    )


def test_stripe_scheme_accepts_any_of_several_signatures_during_secret_rollover():
    new = sign_webhook("whsec_new", BODY, NOW)
    old_sig = sign_webhook("whsec_old", BODY, NOW).split(",")[1]
    header = f"{new},{old_sig},v0=ignored"
    conn = webhook_connector("stripe_v1", secret=["whsec_old"])
    assert conn.verify_webhook(WebhookRequest({"stripe-signature": header}, BODY))
    assert not webhook_connector("stripe_v1", secret="whsec_x").verify_webhook(
        WebhookRequest({"stripe-signature": header}, BODY)
    )


def test_webhook_without_secret_or_config_is_rejected():
    header = sign_webhook("whsec_test", BODY, NOW)
    assert not webhook_connector(secret="").verify_webhook(
        WebhookRequest({"x-concord-signature": header}, BODY)
    )
    plain = RestConnector(
        {"base_url": "https://x.example", "streams": ECHO}, {"webhook_secret": "whsec_test"}
    )
    assert not plain.verify_webhook(WebhookRequest({"x-concord-signature": header}, BODY))


# -- configuration -----------------------------------------------------------------------


def test_config_errors_list_everything_wrong():
    config = {
        "base_url": "api.example.com",
        "auth": {"type": "oauth2_client_credentials"},
        "streams": {
            "a": {"path": "items", "method": "DELETE", "pagination": {"type": "cursr"}},
            "b": {
                "path": "/b",
                "pagination": {"type": "cursor", "param": "after"},
                "incremental": {"cursor_field": "u", "format": "rfc"},
                "transform": {"amount": "times_100"},
                "recordpath": "data",
            },
        },
        "webhook": {"scheme": "github"},
    }
    with pytest.raises(ConnectorConfigError) as caught:
        RestConnector(config, {})
    error = caught.value
    assert isinstance(error, ValueError) and error.permanent
    text = "\n".join(error.errors)
    for expected in [
        "base_url: must be an absolute http(s) URL",
        "auth: missing token_url",
        "credentials: missing client_id, client_secret",
        "streams.a.method: 'DELETE' is not one of GET, POST",
        'streams.a.path: must be a path starting with "/"',
        "streams.a.pagination.type: 'cursr' is not one of none, cursor, page",
        "streams.b: unknown keys recordpath",
        "streams.b.pagination: missing next_path",
        "streams.b.incremental.format: 'rfc' is not one of iso, unix, unix_ms",
        "streams.b.transform.amount: 'times_100' is not one of cents_to_units",
        "webhook.scheme: 'github' is not one of concord_v1, stripe_v1",
    ]:
        assert expected in text, expected
    assert str(error).startswith("invalid REST connector configuration:\n- ")


def test_config_needs_streams_and_known_stream_names(api):
    with pytest.raises(ConnectorConfigError, match="streams: must name at least one stream"):
        RestConnector({"base_url": "https://x.example"}, {})
    conn = connector(api, ECHO)
    with pytest.raises(ConnectorError, match="no stream 'nope'") as caught:
        list(conn.pull("nope", None))
    assert caught.value.permanent


def test_other_top_level_keys_are_left_to_their_owners():
    RestConnector(
        {"base_url": "https://x.example", "streams": ECHO, "consumes": [{"entity": "deal"}]}, {}
    )


def test_registry_builds_by_kind():
    assert isinstance(
        build_connector("rest", {"base_url": "https://x.example", "streams": ECHO}, None),
        RestConnector,
    )
    assert build_connector("file", {}, {}).check().startswith("OK")
    with pytest.raises(ConnectorConfigError, match="unknown connector kind 'soap'"):
        build_connector("soap", {}, {})
    with pytest.raises(ValueError, match=r"streams\.e: missing path"):
        build_connector("rest", {"base_url": "https://x.example", "streams": {"e": {}}}, {})


def test_stored_cursor_that_is_not_a_time_is_permanent(api):
    api.on("GET", "/objects", _sorted_handler)
    with pytest.raises(ConnectorError, match="not a time; run a full sync"):
        list(connector(api, {"o": SORTED_STREAM}).pull("o", "yesterday"))


# -- transforms --------------------------------------------------------------------------


def test_transforms_convert_and_keep_the_source_values():
    record = {
        "amount_due": 12345,
        "amount_paid": "0",
        "currency": "usd",
        "created": 1704067200,
        "due_date": None,
        "tags": ["vip", "eu"],
        "name": "Ada King Lovelace",
        "lines": {"data": [{"amount": 500}, {"amount": 1999}]},
    }
    apply_transforms(
        record,
        {
            "amount_due": "cents_to_units",
            "amount_paid": "cents_to_units",
            "created": "unix_to_iso",
            "due_date": "unix_to_iso",
            "tags": "join",
            "name": "split_name",
            "lines.data.*.amount": "cents_to_units",
            "missing": "join",
        },
    )
    assert record["amount_due"] == "123.45" and record["amount_paid"] == "0.00"
    assert record["created"] == "2024-01-01T00:00:00Z" and record["due_date"] is None
    assert record["tags"] == "vip, eu"
    assert record["name"] == {"first": "Ada", "last": "King Lovelace"}
    assert [line["amount"] for line in record["lines"]["data"]] == ["5.00", "19.99"]
    assert record["_original"] == {
        "amount_due": 12345,
        "amount_paid": "0",
        "created": 1704067200,
        "tags": ["vip", "eu"],
        "name": "Ada King Lovelace",
        "lines.data.0.amount": 500,
        "lines.data.1.amount": 1999,
    }


def test_objects_reshape_list_items_after_their_values_are_converted():
    record = {
        "currency": "eur",
        "line_items": {
            "data": [
                {"description": "Seats", "quantity": 3, "price": {"unit_amount": 1250}},
                {"description": "Setup", "quantity": 1, "price": {"product": "prod_1"}},
            ]
        },
    }
    fields = {
        "sku": "price.product",
        "description": "description",
        "unit_price": "price.unit_amount",
    }
    # The list's transform is listed first, as a stored (jsonb) configuration may order it.
    apply_transforms(
        record,
        {
            "line_items.data": {"name": "objects", "fields": fields},
            "line_items.data.*.price.unit_amount": "cents_to_units",
        },
    )
    assert record["line_items"]["data"] == [
        {"description": "Seats", "unit_price": "12.50"},  # absent values are left out
        {"sku": "prod_1", "description": "Setup"},
    ]
    assert record["_original"]["line_items.data.0.price.unit_amount"] == 1250


def test_cents_to_units_knows_zero_and_three_decimal_currencies():
    jpy = apply_transforms({"amount": 5000, "currency": "jpy"}, {"amount": "cents_to_units"})
    kwd = apply_transforms({"amount": 12340, "currency": "KWD"}, {"amount": "cents_to_units"})
    assert jpy["amount"] == "5000" and kwd["amount"] == "12.340"


def test_stream_transforms_are_applied_before_yielding(api):
    api.on(
        "GET",
        "/v1/invoices",
        lambda s: {
            "data": [{"id": "in_1", "amount_due": 990, "currency": "eur"}],
            "has_more": False,
        },
    )
    stream = {
        "path": "/v1/invoices",
        "record_path": "data",
        "pagination": {"type": "starting_after"},
        "transform": {"amount_due": "cents_to_units"},
    }
    conn = connector(api, {"invoices": stream})
    records, _ = pull_all(conn, "invoices")
    assert records[0]["amount_due"] == "9.90"
    assert conn.transform_record("invoices", {"amount_due": 1}) == {
        "amount_due": "0.01",
        "_original": {"amount_due": 1},
    }


def test_deleted_records_are_told_by_deleted_path():
    conn = RestConnector(
        {
            "base_url": "https://x.example",
            "streams": {
                "t": {"path": "/t", "deleted_path": "status", "deleted_values": ["deleted"]},
                "c": {"path": "/c", "deleted_path": "archived"},
                "n": {"path": "/n"},
            },
        },
        {},
    )
    assert conn.is_deleted("t", {"status": "deleted"})
    assert not conn.is_deleted("t", {"status": "open"})
    assert conn.is_deleted("c", {"archived": True}) and not conn.is_deleted("c", {})
    assert not conn.is_deleted("n", {"archived": True})


# -- presets -----------------------------------------------------------------------------


def test_preset_configs_are_valid_with_canonical_mappings():
    credentials = {"token": "t", "email": "e@x.co", "api_token": "z", "webhook_secret": "w"}
    for name, preset in PRESETS.items():
        config = preset_config(name, "https://api.example.com/")
        assert config["base_url"] == "https://api.example.com"
        RestConnector(config, credentials)
        for stream, spec in config["streams"].items():
            mapping = Mapping.from_dict(spec["mapping"], entity=spec["entity"])
            assert mapping.entity == spec["entity"], f"{name}.{stream}"
        assert set(preset.credentials) <= set(credentials)
    with pytest.raises(ConnectorConfigError, match="unknown preset 'salesforce'"):
        preset_config("salesforce", "https://x.example")


def _hubspot_object(i: int, **properties: Any) -> dict:
    stamp = f"2024-02-01T10:{i:02d}:00.000Z"
    return {
        "id": str(i),
        "properties": {"hs_object_id": str(i), **properties},
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
    }


def test_hubspot_preset_lists_then_searches_since_the_high_water_mark(api):
    companies = [
        _hubspot_object(i, name=f"Acme {i}", domain=f"acme{i}.com", lifecyclestage="customer")
        for i in range(1, 6)
    ]

    def listing(seen: Seen) -> dict:
        assert seen.headers["authorization"] == "Bearer pat-1"
        start = int(seen.query.get("after", 0))
        answer: dict[str, Any] = {"results": companies[start : start + 2]}
        if start + 2 < len(companies):
            answer["paging"] = {"next": {"after": str(start + 2), "link": "…"}}
        return answer

    def search(seen: Seen) -> dict:
        since = int(seen.json["filterGroups"][0]["filters"][0]["value"])
        rows = [
            c
            for c in companies
            if dt.datetime.fromisoformat(c["updatedAt"]).timestamp() * 1000 >= since
        ]
        return {"total": len(rows), "results": rows}

    api.on("GET", "/crm/v3/objects/companies", listing)
    api.on("POST", "/crm/v3/objects/companies/search", search)
    conn = RestConnector(preset_config("hubspot", api.url), {"token": "pat-1"})
    records, pages = pull_all(conn, "companies")
    assert len(records) == 5 and [p.cursor for p in pages] == [
        None,
        None,
        "2024-02-01T10:05:00.000Z",
    ]
    mapping = Mapping.from_dict(conn.streams["companies"]["mapping"], entity="customer")
    mapped = mapping.map(records[0])
    assert mapped.values["name"] == "Acme 1" and mapped.values["lifecycle_stage"] == "customer"

    records, _ = pull_all(conn, "companies", pages[-1].cursor)
    # 60 s look-back: the records of the last minute come again and are deduplicated on
    # landing.
    assert [r["id"] for r in records] == ["4", "5"]


def test_stripe_preset_pages_newest_first_and_converts_cents(api):
    invoices = [
        {
            "id": f"in_{i}",
            "object": "invoice",
            "customer": "cus_1",
            "number": f"N-{i}",
            "amount_due": 1000 * i,
            "amount_paid": 0,
            "currency": "usd",
            "created": 1_706_000_000 + i,
            "due_date": 1_708_000_000,
            "status": "open",
        }
        for i in range(3, 0, -1)
    ]
    api.on("GET", "/v1/invoices", _starting_after_list(invoices))
    conn = RestConnector(preset_config("stripe", api.url), {"token": "sk_test_1"})
    records, pages = pull_all(conn, "invoices")
    assert [r["id"] for r in records] == ["in_3", "in_2", "in_1"]
    assert pages[-1].cursor == "1706000003"
    assert api.seen[0].headers["stripe-version"] == "2024-06-20"
    mapped = Mapping.from_dict(conn.streams["invoices"]["mapping"], entity="invoice").map(
        records[0]
    )
    assert str(mapped.values["amount"]) == "30.00" and mapped.values["status"] == "issued"
    assert str(mapped.values["due_date"]) == "2024-02-15"
    assert mapped.refs == {"customer": "cus_1"}

    api.seen.clear()
    pull_all(conn, "invoices", pages[-1].cursor)
    assert api.seen[0].query["created[gte]"] == "1706000003"


def _starting_after_list(rows: list[dict]) -> Handler:
    def handle(seen: Seen) -> dict:
        after = seen.query.get("starting_after")
        limit = int(seen.query.get("limit", 10))
        ids = [r["id"] for r in rows]
        start = ids.index(after) + 1 if after else 0
        since = int(seen.query.get("created[gte]", 0))
        page = [r for r in rows[start : start + limit] if r["created"] >= since]
        return {"object": "list", "data": page, "has_more": start + limit < len(rows)}

    return handle


def test_zendesk_preset_exports_tickets_with_a_response_cursor(api):
    tickets = [
        {
            "id": i,
            "subject": f"Help {i}",
            "status": "hold",
            "priority": "high",
            "via": {"channel": "email"},
            "organization_id": 77,
            "created_at": "2024-03-01T09:00:00Z",
            "updated_at": "2024-03-02T09:00:00Z",
        }
        for i in range(1, 4)
    ]

    def export(seen: Seen) -> dict:
        assert seen.headers["authorization"].startswith("Basic ")
        position = int(seen.query.get("cursor", 0))
        return {
            "tickets": tickets[position : position + 2],
            "after_cursor": str(min(position + 2, 3)),
            "end_of_stream": position + 2 >= 3,
        }

    api.on("GET", "/api/v2/incremental/tickets/cursor.json", export)
    api.on(
        "GET",
        "/api/v2/users.json",
        lambda s: {
            "users": [
                {
                    "id": 5,
                    "name": "Ann Smith",
                    "email": "ann@acme.com",
                    "organization_id": 77,
                    "updated_at": "2024-03-01T00:00:00Z",
                }
            ]
            if s.query["page"] == "1"
            else [],
            "next_page": None,
        },
    )
    conn = RestConnector(
        preset_config("zendesk", api.url), {"email": "ops@acme.com", "api_token": "zd-tok"}
    )
    records, pages = pull_all(conn, "tickets")
    assert len(records) == 3 and [p.cursor for p in pages] == ["2", "3"]
    assert api.seen[0].query["start_time"] == "0"
    ticket = Mapping.from_dict(conn.streams["tickets"]["mapping"], entity="ticket").map(records[0])
    # Organizations and users share the customer entity: their ids carry their type.
    assert ticket.values["status"] == "pending" and ticket.refs == {"customer": "organization:77"}
    requester_only = {**records[0], "organization_id": None, "requester_id": 5}
    assert Mapping.from_dict(conn.streams["tickets"]["mapping"], entity="ticket").map(
        requester_only
    ).refs == {"customer": "user:5"}

    users, _ = pull_all(conn, "users")
    contact = Mapping.from_dict(conn.streams["users"]["mapping"], entity="contact").map(users[0])
    assert (contact.values["first_name"], contact.values["last_name"]) == ("Ann", "Smith")
    assert (contact.external_id, contact.refs) == ("user:5", {"customer": "organization:77"})
    assert api.calls("/api/v2/users.json")[0].query == {
        "role": "end-user",
        "page": "1",
        "per_page": "100",
    }


# -- presets against the simulators (integrations/simulators) -----------------------------

HUBSPOT_TOKEN = {"token": DEFAULT_CREDENTIALS["crm"]["access_token"]}
STRIPE_KEY = {"token": DEFAULT_CREDENTIALS["erp"]["api_key"]}
ZENDESK_TOKEN = {
    "email": DEFAULT_CREDENTIALS["helpdesk"]["email"],
    "api_token": DEFAULT_CREDENTIALS["helpdesk"]["api_token"],
}


@pytest.fixture
def simulator():
    started = []

    def start(system: str, **options: Any):
        sim = start_simulator(system, seed=11, **options)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def _ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def test_hubspot_preset_against_the_crm_simulator(simulator):
    sim = simulator("crm")
    config = preset_config("hubspot", sim.url)
    conn = RestConnector(config, HUBSPOT_TOKEN)
    assert conn.check().startswith("OK: 1 record from companies")

    records, pages = pull_all(conn, "companies")
    live = sim.world.records("companies")
    assert sorted(r["id"] for r in records) == sorted(r.id for r in live)
    cursor = pages[-1].cursor
    assert _ms(cursor) == max(r.updated for r in live)

    contacts, _ = pull_all(conn, "contacts")
    deals, _ = pull_all(conn, "deals")
    company_ids = {r.id for r in live}
    contact_map = Mapping.from_dict(config["streams"]["contacts"]["mapping"], entity="contact")
    deal_map = Mapping.from_dict(config["streams"]["deals"]["mapping"], entity="deal")
    # Companies and contacts both feed the customer entity: ids carry their object type.
    company_refs = {f"company:{i}" for i in company_ids}
    assert deals and all(deal_map.map(d).refs["customer"] in company_refs for d in deals)
    linked = [c for c in contacts if c["properties"].get("associatedcompanyid")]
    assert linked and all(
        contact_map.external_id_of(c) == f"contact:{c['id']}"
        and contact_map.map(c).refs["customer"] in company_refs
        for c in linked
    )

    # Changes after the sync come back through the search API, sorted, with the cursor
    # stored page by page; the 60 s look-back repeats only the last minute.
    sim.world.advance(120)
    changed = {e.record.id for e in sim.world.tick(25) if e.record.type == "companies"}
    sim.stats.reset()
    records, pages = pull_all(conn, "companies", cursor)
    expected = {r.id for r in sim.world.records("companies") if r.updated >= _ms(cursor) - 60_000}
    assert {r["id"] for r in records} == expected and changed
    assert changed <= expected | {r.id for r in sim.world.records("companies", deleted=True)}
    assert sim.stats.count("/crm/v3/objects/companies/search", method="POST") == len(pages)
    times = [_ms(r["updatedAt"]) for r in records]
    assert times == sorted(times) and all(p.cursor for p in pages)


def test_hubspot_oauth_refresh_and_push_against_the_crm_simulator(simulator):
    sim = simulator("crm")
    credentials = {
        "client_id": DEFAULT_CREDENTIALS["crm"]["client_id"],
        "client_secret": DEFAULT_CREDENTIALS["crm"]["client_secret"],
    }
    conn = RestConnector(preset_config("hubspot", sim.url, oauth=True), credentials)
    assert len(pull_all(conn, "companies")[0]) == len(sim.world.records("companies"))
    sim.expire_tokens()  # revoked early: a 401, one refresh, one retry
    assert len(pull_all(conn, "companies")[0]) == len(sim.world.records("companies"))
    assert sim.stats.count("/oauth/v1/token", status=200) == 2

    # The hub's external id carries the object type (company:<id>); the push strips it.
    company = sim.world.records("companies")[0]
    result = conn.push(
        Change("companies", "update", f"company:{company.id}", {"open_balance": "120.50"}, "k1")
    )
    assert result.external_id == f"company:{company.id}"
    assert sim.world.get("companies", company.id).data["open_balance"] == "120.50"
    created = conn.push(Change("companies", "create", None, {"name": "Newco"}, "outbox-2"))
    assert created.external_id.startswith("company:")
    assert sim.world.get("companies", created.external_id.split(":")[1]).data["name"] == "Newco"
    # A person's CRM id is a contact's: never sent to the companies endpoint.
    calls = sim.stats.count("/crm/v3/objects/companies/" + company.id)
    with pytest.raises(ConnectorError, match="is not a companies record") as caught:
        conn.push(Change("companies", "update", company.id, {"open_balance": "1"}, "k2"))
    assert caught.value.permanent
    assert sim.stats.count("/crm/v3/objects/companies/" + company.id) == calls


def test_simulator_faults_become_connector_errors(simulator):
    sim = simulator("crm")
    conn = RestConnector({**preset_config("hubspot", sim.url), "timeout": 0.3}, HUBSPOT_TOKEN)
    sim.faults.set(fail_next_n_with_429=1, retry_after=3)
    with pytest.raises(ConnectorError) as caught:
        pull_all(conn, "companies")
    assert (caught.value.permanent, caught.value.retry_after, caught.value.status) == (
        False,
        3.0,
        429,
    )
    sim.faults.set(fail_next_n_with_500=1)
    with pytest.raises(ConnectorError) as caught:
        pull_all(conn, "companies")
    assert not caught.value.permanent and caught.value.status == 500
    sim.faults.set(timeout_next_n=1, delay=1.0)
    with pytest.raises(ConnectorError, match="timed out") as caught:
        pull_all(conn, "companies")
    assert not caught.value.permanent
    wrong = RestConnector(preset_config("hubspot", sim.url), {"token": "pat-wrong"})
    with pytest.raises(ConnectorError, match="HTTP 401") as caught:
        wrong.check()
    assert caught.value.permanent


def test_stripe_preset_against_the_erp_simulator(simulator):
    sim = simulator("erp")
    conn = RestConnector(preset_config("stripe", sim.url), STRIPE_KEY)
    sim.world.advance(5)  # nothing created in the same second as the sync below

    records, pages = pull_all(conn, "invoices")
    world = {r.id: r for r in sim.world.records("invoices")}
    assert sorted(r["id"] for r in records) == sorted(world)
    assert pages[-1].cursor == str(max(r.created // 1000 for r in world.values()))
    assert all(p.cursor is None for p in pages[:-1])  # newest first: stored at the end
    for invoice in records:
        cents = world[invoice["id"]].data["amount_due"]
        assert Decimal(invoice["amount_due"]) == Decimal(cents) / 100
        assert invoice["_original"]["amount_due"] == cents

    cursor = pages[-1].cursor
    sim.world.tick(40)
    records, _ = pull_all(conn, "invoices", cursor)
    expected = {r.id for r in sim.world.records("invoices") if r.created // 1000 >= int(cursor)}
    assert {r["id"] for r in records} == expected and len(expected) > 0

    events, _ = pull_all(conn, "events")
    assert events and all(e["type"].startswith("customer.") for e in events)


def test_stripe_push_is_idempotent_against_the_erp_simulator(simulator):
    sim = simulator("erp")
    conn = RestConnector(preset_config("stripe", sim.url), STRIPE_KEY)
    customer = sim.world.records("customers")[0]
    order = {
        "customer": customer.id,
        "currency": "eur",
        "description": "Closed won: Training days",
        "line_items": [
            {
                "price_data": {"unit_amount": 50000, "product_data": {"name": "Training"}},
                "quantity": 2,
            }
        ],
    }
    before = len(sim.world.records("orders"))
    first = conn.push(Change("orders", "create", None, order, "concord-outbox-7"))
    again = conn.push(Change("orders", "create", None, order, "concord-outbox-7"))
    assert first.external_id.startswith("order_") and again.external_id == first.external_id
    assert len(sim.world.records("orders")) == before + 1
    assert first.response["amount_total"] == 100000

    conn.push(Change("customers", "update", customer.id, {"metadata": {"hub_id": "42"}}, "k"))
    assert sim.world.get("customers", customer.id).data["metadata"]["hub_id"] == "42"


def test_zendesk_preset_against_the_helpdesk_simulator(simulator):
    sim = simulator("helpdesk")
    config = preset_config("zendesk", sim.url)
    config["streams"]["users"]["pagination"]["size"] = 10  # several pages
    conn = RestConnector(config, ZENDESK_TOKEN)

    tickets, pages = pull_all(conn, "tickets")
    assert sorted(t["id"] for t in tickets) == sorted(
        int(r.id) for r in sim.world.records("tickets", deleted=None)
    )
    cursor = pages[-1].cursor
    assert cursor and not pages[-1].has_more
    mapping = Mapping.from_dict(config["streams"]["tickets"]["mapping"], entity="ticket")
    solved = [t for t in tickets if t["status"] in ("solved", "closed")]
    assert solved and all(mapping.map(t).values.get("resolved_at") for t in solved)

    again, pages = pull_all(conn, "tickets", cursor)
    assert again == [] and pages[-1].cursor == cursor  # nothing new, the cursor holds
    sim.world.advance(2)
    events = sim.world.tick(30)
    changed = {int(e.record.id) for e in events if e.record.type == "tickets"}
    tickets, pages = pull_all(conn, "tickets", cursor)
    assert {t["id"] for t in tickets} == changed and changed
    assert pages[-1].cursor != cursor

    # One endpoint, two streams: end users with an organization are contacts, the others
    # persons (customers).
    users, pages = pull_all(conn, "users")
    people, _ = pull_all(conn, "people")
    end_users = [r for r in sim.world.records("users") if r.data.get("role") == "end-user"]
    assert len(pages) > 2 and sorted(u["id"] for u in users) == sorted(
        int(r.id) for r in end_users if r.data.get("organization_id")
    )
    assert people and sorted(u["id"] for u in people) == sorted(
        int(r.id) for r in end_users if not r.data.get("organization_id")
    )
    organizations, _ = pull_all(conn, "organizations")
    assert len(organizations) == len(sim.world.records("organizations"))


def test_simulator_webhook_signatures_verify():
    config = preset_config("zendesk", "https://support.example.com")
    body = json.dumps({"id": "evt_1", "type": "ticket.updated", "data": {"object": {}}}).encode()
    conn = RestConnector(config, {**ZENDESK_TOKEN, "webhook_secret": "whsec_demo"})
    header = signature_header("whsec_demo", body)
    assert conn.verify_webhook(WebhookRequest({"x-concord-signature": header}, body))
    assert not conn.verify_webhook(
        WebhookRequest({"x-concord-signature": header}, body.replace(b"evt_1", b"evt_2"))
    )
