"""The HTTP side: one ThreadingHTTPServer per simulator on loopback, plus ``/_sim`` admin.

Request flow: admin paths (``/_sim...``) are answered directly, without auth, faults or
stats. Every other request first meets the fault knobs (429, 5xx, hang, slowness), then
the system's app (auth, routing, vendor-shaped JSON), and is counted in the stats.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from .faults import Decision, Faults, Stats
from .systems import SYSTEMS, canonical_system
from .webhooks import WebhookSender
from .world import Event, Record, World

logger = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024
JOIN_TIMEOUT = 5.0

DEFAULT_CREDENTIALS: dict[str, dict[str, Any]] = {
    "crm": {
        "access_token": "pat-na1-concord-demo",  # a private-app token; None disables it
        "client_id": "concord-crm-client",
        "client_secret": "concord-crm-secret",
        "token_ttl": 1800,  # seconds an OAuth access token lives
    },
    "erp": {"api_key": "sk_test_concord_demo"},
    "helpdesk": {
        "email": "admin@support.example.com",
        "api_token": "concord-zendesk-token",
        "oauth_token": None,  # a bearer token, if set
    },
}


# -- request and response -----------------------------------------------------------------


class ApiError(Exception):
    """An error answer; each app renders it in its vendor's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.body = body


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, no query
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    base_url: str

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def csv(self, name: str) -> list[str]:
        """A list given as ``a,b`` and/or as repeated parameters."""
        out: list[str] = []
        for value in self.query.get(name, []):
            out.extend(v.strip() for v in value.split(",") if v.strip())
        return out

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.arg(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be an integer, got {raw!r}", param=name) from None
        if not low <= value <= high:
            raise ApiError(400, f"{name} must be between {low} and {high}", param=name)
        return value

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"invalid JSON body: {exc}", code="invalid_json") from None

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def form(self) -> dict[str, Any]:
        """A form body (``a[b][0]=c`` nests, as Stripe reads it), or a JSON object."""
        if self.content_type == "application/json":
            data = self.json()
            if data is None:
                return {}
            if not isinstance(data, dict):
                raise ApiError(400, "the JSON body must be an object")
            return data
        try:
            text = self.body.decode()
        except UnicodeDecodeError:
            raise ApiError(400, "the form body is not UTF-8") from None
        return parse_nested(parse_qsl(text, keep_blank_values=True))


_KEY_PART = re.compile(r"\[([^\[\]]*)\]")


def parse_nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``[("a[b]", "1"), ("l[0][x]", "2"), ("e[]", "3")]`` -> ``{"a": {"b": "1"}, ...}``.

    Indexed parts (``l[0]``) become lists ordered by index; ``e[]`` appends.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head, *_KEY_PART.findall("[" + rest)] if rest else [head]
        append = len(parts) > 1 and parts[-1] == ""
        if append:
            parts = parts[:-1]
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        last = parts[-1]
        if append:
            if not isinstance(node.get(last), list):
                node[last] = []
            node[last].append(value)
        else:
            node[last] = value
    return _lists_from_dicts(root)


def _lists_from_dicts(value: Any) -> Any:
    """Dicts whose keys are all digits become lists ordered by index."""
    if isinstance(value, dict):
        converted = {k: _lists_from_dicts(v) for k, v in value.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(value, list):
        return [_lists_from_dicts(v) for v in value]
    return value


# -- apps ---------------------------------------------------------------------------------

Route = tuple[str, str, str]  # method, path pattern, method name on the app


class BaseApp:
    """One vendor's API: routes, auth and JSON shapes. Subclasses fill these in."""

    system = ""
    routes: list[Route] = []
    public: frozenset[str] = frozenset()  # handler names that need no auth

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.world = sim.world
        self._compiled = [
            (method, re.compile(pattern + r"\Z"), getattr(self, name))
            for method, pattern, name in self.routes
        ]

    # subclasses ---------------------------------------------------------------------
    def authenticate(self, req: Request) -> None:
        raise NotImplementedError

    def error_body(self, err: ApiError) -> Any:
        return {"error": err.message}

    def event_payload(self, event: Event) -> dict[str, Any]:
        raise NotImplementedError

    # shared -------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        try:
            return self._dispatch(req)
        except ApiError as err:
            body = err.body if err.body is not None else self.error_body(err)
            return Response(err.status, body, err.headers)

    def _dispatch(self, req: Request) -> Response:
        path_known = False
        for method, pattern, handler in self._compiled:
            match = pattern.match(req.path)
            if not match:
                continue
            path_known = True
            if method != req.method:
                continue
            if handler.__name__ not in self.public:
                self.authenticate(req)
            return handler(req, **match.groupdict())
        if path_known:
            raise ApiError(405, f"{req.method} is not allowed on {req.path}")
        raise ApiError(404, f"no such endpoint: {req.method} {req.path}", code="not_found")

    def fault_response(self, decision: Decision) -> Response:
        status = decision.status or 500
        if status == 429:
            err = ApiError(429, "Too many requests; retry later.", code="rate_limit")
            headers = {"Retry-After": str(decision.retry_after or 0)}
        else:
            err = ApiError(
                status, "The server had an internal error; retry later.", code="server_error"
            )
            headers = {}
        return Response(status, self.error_body(err), headers)

    def page_of(self, items: list[Record], earlier: list[Record]) -> list[Record]:
        return self.sim.faults.page(items, earlier)


class TokenStore:
    """OAuth access and refresh tokens issued by a simulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}  # token -> expiry (time.time())
        self._refresh: set[str] = set()

    def issue(self, ttl: float) -> tuple[str, str]:
        now = time.time()
        with self._lock:
            # forget tokens that expired over an hour ago, so the store stays small
            self._access = {t: e for t, e in self._access.items() if e > now - 3600}
            access = "CNT" + secrets.token_urlsafe(24)
            refresh = "rt-" + secrets.token_urlsafe(18)
            self._access[access] = now + ttl
            self._refresh.add(refresh)
            return access, refresh

    def check(self, token: str) -> float | None:
        """Seconds since expiry (<= 0 while valid); None for a token never issued."""
        with self._lock:
            expiry = self._access.get(token)
        return None if expiry is None else time.time() - expiry

    def valid_refresh(self, token: str) -> bool:
        with self._lock:
            return token in self._refresh

    def expire_all(self) -> int:
        with self._lock:
            now = time.time()
            live = [t for t, e in self._access.items() if e > now]
            for t in live:
                self._access[t] = now - 0.001
            return len(live)

    def clear(self) -> None:
        with self._lock:
            self._access.clear()
            self._refresh.clear()


# -- the HTTP server ----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # stop() joins them itself, with a bound
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.open: dict[socket.socket, threading.Thread] = {}
        self.open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("simulator connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ConcordSimulator/1.0"
    timeout = 30  # an idle keep-alive connection is closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.open_lock:
            self.server.open[self.connection] = threading.current_thread()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.open_lock:
                self.server.open.pop(self.connection, None)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s simulator: " + format, self.server.sim.system, *args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        sim = self.server.sim
        arrived = time.time()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send(Response(413 if length > 0 else 400, {"error": "bad Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            base_url=sim.url,
        )
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            self._send(sim.admin(req))
            return
        decision = sim.faults.check(req.path)
        if decision.delay and sim.stopping.wait(decision.delay):
            self.close_connection = True  # shutting down mid-hang: just hang up
            return
        if decision.status:
            response = sim.app.fault_response(decision)
        else:
            try:
                response = sim.app.handle(req)
            except Exception:
                logger.exception("%s simulator failed on %s %s", sim.system, req.method, req.path)
                response = sim.app.fault_response(Decision(status=500))
        sim.stats.record(req.method, req.path, response.status, arrived)
        self._send(response)

    def _send(self, response: Response) -> None:
        if response.body is None:
            data = b""
        else:
            data = json.dumps(response.body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            self.send_response(response.status)
            if response.status != 204:
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-Id", "req_" + secrets.token_hex(8))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and response.status != 204:
                self.wfile.write(data)
        except OSError:  # the client gave up (a timeout fault) or went away
            self.close_connection = True


# -- the simulator ------------------------------------------------------------------------


def _app_class(system: str) -> type[BaseApp]:
    from . import crm, erp, helpdesk

    return {"crm": crm.CrmApp, "erp": erp.ErpApp, "helpdesk": helpdesk.HelpdeskApp}[system]


class Simulator:
    """One fake system on ``host:port`` (0 = a free port). Call :meth:`start` to serve.

    ``sim.url``, ``sim.world``, ``sim.faults``, ``sim.stats``, ``sim.credentials``;
    :meth:`stop` shuts the server, joins its threads and frees the port.
    """

    def __init__(
        self,
        system: str,
        *,
        world: World | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, Any] | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        seed: int = 0,
        customers: int = 30,
        tick_every: float | None = None,
        faults: Mapping[str, Any] | None = None,
    ) -> None:
        self.system = canonical_system(system)
        self.world = world or World.generate(self.system, customers=customers, seed=seed)
        if self.world.system != self.system:
            raise ValueError(f"a {self.world.system} world cannot back a {self.system} simulator")
        self.credentials = {**DEFAULT_CREDENTIALS[self.system], **(credentials or {})}
        self.faults = Faults(seed=seed)
        if faults:
            self.faults.set(**faults)
        self.stats = Stats()
        self.tokens = TokenStore()
        self.tick_every = tick_every
        self.stopping = threading.Event()
        self.webhooks = WebhookSender(
            self.system, on_result=self.stats.webhook, copies=self.faults.webhook_copies
        )
        self.webhooks.configure(webhook_url, webhook_secret)
        self._server = _Server((host, port), self)
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.app = _app_class(self.system)(self)
        self._threads: list[threading.Thread] = []
        self._started = self._stopped = False
        self.world.subscribe(self._on_event)

    def __repr__(self) -> str:
        return f"<Simulator {self.system} {self.url}>"

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Simulator:
        if self._started:
            return self
        self._started = True
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-{self.system}-http",
            daemon=True,
        )
        serve.start()
        self._threads.append(serve)
        self.webhooks.start()
        if self.tick_every:
            ticker = threading.Thread(
                target=self._tick_loop, name=f"sim-{self.system}-tick", daemon=True
            )
            ticker.start()
            self._threads.append(ticker)
        return self

    def stop(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop serving, close open connections, join every thread, free the port."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        self.world.unsubscribe(self._on_event)
        if self._started:
            self._server.shutdown()
        with self._server.open_lock:
            open_conns = list(self._server.open.items())
        for conn, _thread in open_conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        deadline = time.monotonic() + timeout
        for _conn, thread in open_conns:
            thread.join(max(0.0, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.webhooks.stop(max(0.1, deadline - time.monotonic()))

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def _tick_loop(self) -> None:
        assert self.tick_every
        while not self.stopping.wait(self.tick_every):
            try:
                self.world.tick(1)
            except Exception:
                logger.exception("%s simulator tick failed", self.system)

    def _on_event(self, event: Event) -> None:
        if self.webhooks.url:
            self.webhooks.enqueue(self.app.event_payload(event))

    def set_webhook(self, url: str | None, secret: str | None = None) -> None:
        self.webhooks.configure(url, secret)

    def reset(self, *, world: bool = False) -> None:
        """Clear stats, faults and issued tokens; with ``world=True`` also the data."""
        self.stats.reset()
        self.faults.reset()
        self.tokens.clear()
        if world:
            self.world.reset()

    def expire_tokens(self) -> int:
        return self.tokens.expire_all()

    # -- /_sim admin ------------------------------------------------------------------

    def admin(self, req: Request) -> Response:
        try:
            return self._admin(req)
        except (ApiError, ValueError, KeyError, TypeError) as exc:
            status = exc.status if isinstance(exc, ApiError) else 400
            message = exc.message if isinstance(exc, ApiError) else str(exc).strip("'\"")
            return Response(status, {"error": message})

    def _admin_body(self, req: Request) -> dict[str, Any]:
        data = req.json() if req.body else {}
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    def _admin(self, req: Request) -> Response:
        action = req.path.removeprefix("/_sim").strip("/")
        method = req.method
        if action == "" and method == "GET":
            return Response(200, self.info())
        if action == "stats" and method == "GET":
            return Response(200, {**self.stats.snapshot(), "faults": self.faults.snapshot()})
        if action == "reset" and method == "POST":
            body = self._admin_body(req)
            world = bool(body.get("world")) or req.arg("world") in ("1", "true")
            self.reset(world=world)
            return Response(200, {"reset": True, "world": world})
        if action == "faults":
            if method == "GET":
                return Response(200, self.faults.snapshot())
            if method == "POST":
                return Response(200, self.faults.set(**self._admin_body(req)))
            if method == "DELETE":
                self.faults.reset()
                return Response(200, self.faults.snapshot())
        if action == "tick" and method == "POST":
            n = req.int_arg("n", 1, 0, 1000)
            events = self.world.tick(n)
            return Response(200, {"events": [self._event_summary(e) for e in events]})
        if action == "advance" and method == "POST":
            seconds = float(req.arg("seconds") or self._admin_body(req).get("seconds", 0))
            if not 0 <= seconds <= 10 * 365 * 86400:
                raise ApiError(400, "seconds must be between 0 and ten years")
            return Response(200, {"now_ms": self.world.advance(seconds)})
        if action == "webhook":
            if method == "POST":
                body = self._admin_body(req)
                self.set_webhook(body.get("url"), body.get("secret"))
            if method in ("GET", "POST"):
                return Response(
                    200, {"url": self.webhooks.url, "log": list(self.webhooks.log)[-50:]}
                )
        if action == "delete" and method == "POST":
            return Response(200, self._admin_delete(self._admin_body(req)))
        if action == "expire_tokens" and method == "POST":
            return Response(200, {"expired": self.expire_tokens()})
        if action == "events" and method == "GET":
            since = req.int_arg("since", 0, 0, 2**62)
            limit = req.int_arg("limit", 100, 1, 1000)
            events = self.world.events(since_seq=since)[:limit]
            return Response(
                200,
                {
                    "events": [self.app.event_payload(e) for e in events],
                    "last_seq": events[-1].seq if events else since,
                },
            )
        raise ApiError(404, f"no admin endpoint {method} {req.path}")

    def _admin_delete(self, body: dict[str, Any]) -> dict[str, Any]:
        obj_type = self.world.spec.canonical_type(str(body.get("object", "")))
        ids = [body["id"]] if body.get("id") is not None else None
        deleted = self.delete_records(obj_type, ids=ids, count=int(body.get("count", 1)))
        return {"object": obj_type, "deleted": deleted}

    def delete_records(
        self, obj_type: str, *, ids: list[Any] | None = None, count: int = 1
    ) -> list[str]:
        """Delete (archive) the given records, or ``count`` random live ones (seeded)."""
        if ids is None:
            live = sorted(r.id for r in self.world.records(obj_type))
            ids = self.world.tick_rng.sample(live, min(max(0, count), len(live)))
        deleted = []
        for rid in ids:
            self.world.delete(obj_type, rid)
            deleted.append(str(rid))
        return deleted

    @staticmethod
    def _event_summary(event: Event) -> dict[str, Any]:
        return {
            "id": event.id,
            "type": event.type,
            "object": event.record.type,
            "object_id": event.record.id,
            "created_ms": event.created,
        }

    def info(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "vendor": self.world.spec.vendor,
            "url": self.url,
            "objects": self.world.counts(),
            "events": self.world.last_event_seq,
            "webhook_url": self.webhooks.url,
            "tick_every": self.tick_every,
            "now_ms": self.world.now_ms(),
        }


def start_simulator(
    system: str,
    world: World | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Simulator:
    """Build and start one simulator; see :class:`Simulator` for the options."""
    return Simulator(system, world=world, host=host, port=port, **options).start()


def start_all(
    *,
    host: str = "127.0.0.1",
    base_port: int = 0,
    worlds: Mapping[str, World] | None = None,
    **options: Any,
) -> dict[str, Simulator]:
    """The three simulators on ``base_port``, +1, +2 (all free ports when 0)."""
    sims: dict[str, Simulator] = {}
    try:
        for offset, system in enumerate(SYSTEMS):
            port = base_port + offset if base_port else 0
            world = (worlds or {}).get(system)
            sims[system] = start_simulator(system, world, host=host, port=port, **options)
    except Exception:
        for sim in sims.values():
            sim.stop()
        raise
    return sims


def link(req: Request, path: str, params: Mapping[str, Any]) -> str:
    """An absolute URL on this simulator."""
    query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
    return f"{req.base_url}{path}" + (f"?{query}" if query else "")
