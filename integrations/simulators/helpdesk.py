"""The help-desk simulator, shaped like Zendesk Support API v2 (tickets, users, organizations).

Auth: HTTP Basic ``{email}/token:{api_token}`` (or a bearer OAuth token if configured).
Incremental exports (cursor and time based) include deleted tickets with status
``deleted``; ``include=dates`` adds each ticket's ``dates`` (``solved_at`` ...), and
``include=metric_sets`` the ticket metrics with resolution times.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import random
from collections.abc import Callable
from typing import Any

from . import generate as gen
from .server import ApiError, BaseApp, Request, Response, link
from .systems import SystemSpec, row_meta, weighted_choice
from .world import Event, Record, World, iso_s, to_ms

TICKET_STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_TYPES = ("question", "incident", "problem", "task")
SINGULAR = {"tickets": "ticket", "users": "user", "organizations": "organization"}
BIG = 2**63
LOCALE_COUNTRY = {"de": "DE", "fr": "FR", "nl": "NL", "en-GB": "GB", "en-US": "US"}
INT_FIELDS = (
    "requester_id",
    "submitter_id",
    "assignee_id",
    "organization_id",
    "group_id",
    "brand_id",
)


def _int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    return int(value)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_s(ms)


# -- store rules --------------------------------------------------------------------------


class HelpdeskSpec(SystemSpec):
    name = "helpdesk"
    vendor = "Zendesk Support API v2"
    object_types = ("tickets", "users", "organizations")
    type_aliases = {
        "ticket": "tickets",
        "user": "users",
        "organization": "organizations",
        "orgs": "organizations",
        "organisations": "organizations",
    }
    _bases = {"tickets": 1000, "users": 360_000_000_000, "organizations": 360_100_000_000}

    def new_id(self, world: World, obj_type: str) -> str:
        return str(world.next_number(obj_type, self._bases[obj_type]))

    def new_event_id(self, world: World) -> str:
        bits = world.id_rng.getrandbits(128)
        text = f"{bits:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def event_types(
        self, obj_type: str, action: str, record: Record, previous: dict[str, Any]
    ) -> list[str]:
        name = SINGULAR[obj_type]
        if action != "updated":
            return [f"{name}.{action}"]
        if obj_type == "tickets":
            if "status" in previous:
                return ["ticket.status_changed"]
            if "priority" in previous:
                return ["ticket.priority_changed"]
            if not previous:
                return ["ticket.comment_added"]
        return [f"{name}.updated"]

    def record_from_row(self, world: World, obj_type: str, row: dict[str, Any], now: int) -> Record:
        rid, created, updated, deleted, deleted_at = row_meta(row, now)
        rid = rid or world.new_id(obj_type)
        for key in INT_FIELDS:
            if key in row:
                row[key] = _int(row[key])
        row.pop("url", None)
        if obj_type == "tickets":
            data = self._ticket_data(row, created, updated)
        elif obj_type == "users":
            data = {
                "name": None,
                "email": None,
                "phone": None,
                "organization_id": None,
                "role": "end-user",
                "external_id": None,
                "time_zone": None,
                "locale": "en-US",
                "tags": [],
                "user_fields": {},
                "verified": True,
                **row,
            }
        else:
            domains = row.pop("domain_names", None) or row.pop("domain", None) or []
            data = {
                "name": None,
                "details": None,
                "notes": None,
                "external_id": None,
                "group_id": None,
                "tags": [],
                "organization_fields": {},
                **row,
                "domain_names": [domains] if isinstance(domains, str) else list(domains),
            }
        return Record(obj_type, rid, data, created, updated, deleted, deleted_at)

    def _ticket_data(self, row: dict[str, Any], created: int, updated: int) -> dict[str, Any]:
        solved = row.pop("solved_at", None)
        solved_ms = to_ms(solved) if solved not in (None, "") else None
        via = row.pop("via", None) or row.pop("channel", None) or "web"
        if isinstance(via, str):
            via = {"channel": via}
        via = {"source": {"from": {}, "to": {}, "rel": None}, **via}
        status = row.get("status") or ("solved" if solved_ms else "new")
        if status in ("solved", "closed") and solved_ms is None:
            solved_ms = updated
        assigned = None
        if row.get("assignee_id"):
            assigned = min(created + 30 * 60_000, solved_ms or updated, updated)
        data = {
            "subject": None,
            "description": None,
            "type": None,
            "priority": None,
            "requester_id": None,
            "submitter_id": row.get("requester_id"),
            "assignee_id": None,
            "organization_id": None,
            "group_id": None,
            "external_id": None,
            "tags": [],
            "custom_fields": [],
            "due_at": None,
            **row,
            "status": status,
            "via": via,
            "_solved_at": solved_ms,
            "_status_at": updated,
            "_assigned_at": assigned,
            "_initially_assigned_at": assigned,
            "_reopens": 0,
            "_comment_count": 3 if solved_ms else 1,
            "_latest_comment_at": solved_ms or created,
        }
        return data

    def tick(self, world: World, rng: random.Random) -> None:
        actions = [
            (_new_ticket, 3),
            (_progress_ticket, 5),
            (_ticket_priority, 1),
            (_ticket_comment, 1),
            (_user_edit, 1),
            (_user_new, 0.7),
            (_org_edit, 0.5),
            (_ticket_delete, 0.2),
        ]
        for _ in range(10):
            if weighted_choice(rng, actions)(world, rng):
                return


SPEC = HelpdeskSpec()


# -- live changes -------------------------------------------------------------------------


def _agents(world: World) -> list[Record]:
    return [u for u in world.records("users") if u.data.get("role") in ("agent", "admin")]


def _end_users(world: World) -> list[Record]:
    return [u for u in world.records("users") if u.data.get("role") == "end-user"]


def status_changes(
    world: World, ticket: Record, status: str, agent_id: int | None = None
) -> dict[str, Any]:
    """The field changes that go with moving ``ticket`` to ``status``."""
    d = ticket.data
    now = world.now_ms()
    changes: dict[str, Any] = {"status": status, "_status_at": now}
    if status in ("solved", "closed") and not d.get("_solved_at"):
        changes["_solved_at"] = now
    if status in ("open", "pending", "hold") and d.get("status") == "solved":
        changes.update(_solved_at=None, _reopens=(d.get("_reopens") or 0) + 1)
    if status != "new" and not d.get("assignee_id") and agent_id:
        changes.update(assignee_id=agent_id, _assigned_at=now)
        if not d.get("_initially_assigned_at"):
            changes["_initially_assigned_at"] = now
    return changes


def _new_ticket(world: World, rng: random.Random) -> bool:
    users = _end_users(world)
    if not users:
        return False
    requester = rng.choice(users)
    kind, subject = rng.choice(gen.TICKET_SUBJECTS)
    now = world.now_ms()
    world.create(
        "tickets",
        {
            "subject": subject,
            "description": f"{subject}. Could you please have a look? Thanks.",
            "type": kind,
            "priority": weighted_choice(
                rng, [("low", 2), ("normal", 6), ("high", 2), ("urgent", 1)]
            ),
            "status": "new",
            "requester_id": int(requester.id),
            "submitter_id": int(requester.id),
            "assignee_id": None,
            "organization_id": requester.data.get("organization_id"),
            "group_id": None,
            "external_id": None,
            "tags": [],
            "custom_fields": [],
            "due_at": None,
            "via": {
                "channel": weighted_choice(rng, gen.CHANNELS),
                "source": {"from": {}, "to": {}, "rel": None},
            },
            "_solved_at": None,
            "_status_at": now,
            "_assigned_at": None,
            "_initially_assigned_at": None,
            "_reopens": 0,
            "_comment_count": 1,
            "_latest_comment_at": now,
        },
    )
    return True


NEXT_STATUS = {
    "new": [("open", 1)],
    "open": [("pending", 2), ("solved", 3), ("hold", 0.3)],
    "pending": [("open", 1), ("solved", 2)],
    "hold": [("open", 1)],
    "solved": [("closed", 4), ("open", 1)],
}


def _progress_ticket(world: World, rng: random.Random) -> bool:
    tickets = [t for t in world.records("tickets") if t.data.get("status") in NEXT_STATUS]
    agents = _agents(world)
    if not tickets:
        return False
    ticket = rng.choice(tickets)
    status = weighted_choice(rng, NEXT_STATUS[ticket.data["status"]])
    agent = int(rng.choice(agents).id) if agents else None
    world.update("tickets", ticket.id, status_changes(world, ticket, status, agent))
    return True


def _ticket_priority(world: World, rng: random.Random) -> bool:
    tickets = [t for t in world.records("tickets") if t.data.get("status") != "closed"]
    if not tickets:
        return False
    ticket = rng.choice(tickets)
    options = [p for p in PRIORITIES if p != ticket.data.get("priority")]
    world.update("tickets", ticket.id, {"priority": rng.choice(options)})
    return True


def _ticket_comment(world: World, rng: random.Random) -> bool:
    tickets = [t for t in world.records("tickets") if t.data.get("status") != "closed"]
    if not tickets:
        return False
    ticket = rng.choice(tickets)
    world.update(
        "tickets",
        ticket.id,
        {
            "_comment_count": (ticket.data.get("_comment_count") or 0) + 1,
            "_latest_comment_at": world.now_ms(),
        },
    )
    return True


def _country_of(user: Record) -> str:
    return LOCALE_COUNTRY.get(user.data.get("locale") or "", "DE")


def _user_edit(world: World, rng: random.Random) -> bool:
    users = _end_users(world)
    if not users:
        return False
    user = rng.choice(users)
    phone = gen.new_phone(rng, _country_of(user)).format(rng.choice(["e164", "national"]))
    world.update("users", user.id, {"phone": phone})
    return True


def _user_new(world: World, rng: random.Random) -> bool:
    orgs = world.records("organizations")
    if not orgs:
        return False
    org = rng.choice(orgs)
    domain = (org.data.get("domain_names") or [None])[0]
    members = [u for u in world.records("users") if u.data.get("organization_id") == int(org.id)]
    country = _country_of(members[0]) if members else "DE"
    taken = {(u.data.get("email") or "").lower() for u in world.records("users", deleted=None)}
    person = gen.new_person(rng, country, domain, taken)
    info = gen.COUNTRIES[country]
    world.create(
        "users",
        {
            "name": person.name,
            "email": person.email,
            "phone": person.phone.format("e164"),
            "organization_id": int(org.id),
            "role": "end-user",
            "external_id": None,
            "time_zone": info["tz"],
            "locale": info["locale"],
            "tags": [],
            "user_fields": {},
            "verified": True,
        },
    )
    return True


def _org_edit(world: World, rng: random.Random) -> bool:
    orgs = world.records("organizations")
    if not orgs:
        return False
    org = rng.choice(orgs)
    note = rng.choice(
        [
            "Key account",
            "Prefers e-mail",
            "Renewal due next quarter",
            "Escalate billing questions to finance",
        ]
    )
    world.update("organizations", org.id, {"notes": note})
    return True


def _ticket_delete(world: World, rng: random.Random) -> bool:
    tickets = [t for t in world.records("tickets") if t.data.get("status") == "new"]
    if not tickets:
        return False
    world.delete("tickets", rng.choice(tickets).id)
    return True


# -- HTTP ---------------------------------------------------------------------------------

TID = r"(?P<oid>\d+)"


def _encode(pos: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{pos[0]}|{pos[1]}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, rid = text.split("|")
        return int(ms), int(rid)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "cursor is invalid", code="InvalidPaginationParameter") from None


def _pos(rec: Record) -> tuple[int, int]:
    return (rec.updated, int(rec.id) if rec.id.isdigit() else 0)


def _invalid(field: str, description: str, error: str = "InvalidValue") -> ApiError:
    return ApiError(
        422,
        "Record validation errors",
        code="RecordInvalid",
        body={
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {field: [{"description": description, "error": error}]},
        },
    )


class HelpdeskApp(BaseApp):
    system = "helpdesk"
    routes = [
        ("GET", r"/api/v2/users/me\.json", "me"),
        ("GET", r"/api/v2/incremental/tickets/cursor\.json", "export_tickets_cursor"),
        ("GET", r"/api/v2/incremental/users/cursor\.json", "export_users_cursor"),
        ("GET", r"/api/v2/incremental/tickets\.json", "export_tickets_time"),
        ("GET", r"/api/v2/incremental/users\.json", "export_users_time"),
        ("GET", r"/api/v2/incremental/organizations\.json", "export_organizations_time"),
        ("GET", r"/api/v2/tickets\.json", "list_tickets"),
        ("POST", r"/api/v2/tickets\.json", "create_ticket"),
        ("GET", rf"/api/v2/tickets/{TID}\.json", "get_ticket"),
        ("PUT", rf"/api/v2/tickets/{TID}\.json", "update_ticket"),
        ("DELETE", rf"/api/v2/tickets/{TID}\.json", "delete_ticket"),
        ("GET", rf"/api/v2/tickets/{TID}/metrics\.json", "ticket_metrics"),
        ("GET", r"/api/v2/users\.json", "list_users"),
        ("POST", r"/api/v2/users\.json", "create_user"),
        ("GET", rf"/api/v2/users/{TID}\.json", "get_user"),
        ("PUT", rf"/api/v2/users/{TID}\.json", "update_user"),
        ("DELETE", rf"/api/v2/users/{TID}\.json", "delete_user"),
        ("GET", r"/api/v2/organizations\.json", "list_organizations"),
        ("POST", r"/api/v2/organizations\.json", "create_organization"),
        ("GET", rf"/api/v2/organizations/{TID}\.json", "get_organization"),
        ("PUT", rf"/api/v2/organizations/{TID}\.json", "update_organization"),
        ("DELETE", rf"/api/v2/organizations/{TID}\.json", "delete_organization"),
    ]

    # -- auth and errors ----------------------------------------------------------------

    def authenticate(self, req: Request) -> None:
        header = req.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        creds = self.sim.credentials
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            expected = f"{creds.get('email')}/token:{creds.get('api_token')}"
            if creds.get("api_token") and hmac.compare_digest(decoded.encode(), expected.encode()):
                return
        elif scheme.lower() == "bearer" and creds.get("oauth_token"):
            token = str(creds["oauth_token"]).encode()
            if hmac.compare_digest(value.strip().encode(), token):
                return
        raise ApiError(401, "Couldn't authenticate you", code="auth")

    def error_body(self, err: ApiError) -> Any:
        if err.code == "auth":
            return {"error": err.message}
        if err.status == 429:
            return {
                "error": "APIRateLimitExceeded",
                "description": "Number of allowed API requests per minute exceeded",
            }
        if err.status >= 500:
            return {"error": "InternalError", "description": err.message}
        if err.status == 404:
            return {
                "error": "RecordNotFound" if err.code != "not_found" else "InvalidEndpoint",
                "description": "Not found" if err.code != "not_found" else err.message,
            }
        return {"error": err.code or "InvalidValue", "description": err.message}

    # -- rendering ----------------------------------------------------------------------

    def _url(self, obj_type: str, rid: str) -> str:
        return f"{self.sim.url}/api/v2/{obj_type}/{rid}.json"

    def render(self, rec: Record, include: set[str] = frozenset()) -> dict[str, Any]:
        return getattr(self, f"_render_{rec.type}")(rec, include)

    def _render_tickets(self, rec: Record, include: set[str]) -> dict[str, Any]:
        d = rec.data
        out = {
            "url": self._url("tickets", rec.id),
            "id": int(rec.id),
            "external_id": d.get("external_id"),
            "via": d.get("via"),
            "created_at": iso_s(rec.created),
            "updated_at": iso_s(rec.updated),
            "generated_timestamp": rec.updated // 1000,
            "type": d.get("type"),
            "subject": d.get("subject"),
            "raw_subject": d.get("subject"),
            "description": d.get("description"),
            "priority": d.get("priority"),
            "status": "deleted" if rec.deleted else d.get("status"),
            "recipient": None,
            "requester_id": d.get("requester_id"),
            "submitter_id": d.get("submitter_id"),
            "assignee_id": d.get("assignee_id"),
            "organization_id": d.get("organization_id"),
            "group_id": d.get("group_id"),
            "collaborator_ids": [],
            "follower_ids": [],
            "email_cc_ids": [],
            "forum_topic_id": None,
            "problem_id": None,
            "has_incidents": False,
            "is_public": True,
            "due_at": d.get("due_at"),
            "tags": d.get("tags") or [],
            "custom_fields": d.get("custom_fields") or [],
            "satisfaction_rating": None,
            "sharing_agreement_ids": [],
            "brand_id": d.get("brand_id") or 360_000_001,
            "allow_channelback": False,
            "allow_attachments": True,
        }
        if "dates" in include:
            out["dates"] = self._dates(rec)
        return out

    def _dates(self, rec: Record) -> dict[str, Any]:
        d = rec.data
        return {
            "assignee_updated_at": _iso(d.get("_assigned_at")),
            "requester_updated_at": iso_s(rec.created),
            "status_updated_at": _iso(d.get("_status_at") or rec.updated),
            "initially_assigned_at": _iso(d.get("_initially_assigned_at")),
            "assigned_at": _iso(d.get("_assigned_at")),
            "solved_at": _iso(d.get("_solved_at")),
            "latest_comment_added_at": _iso(d.get("_latest_comment_at") or rec.created),
        }

    def metric_set(self, rec: Record) -> dict[str, Any]:
        """Zendesk ticket metrics; business minutes are reported equal to calendar ones."""
        d = rec.data

        def minutes(end: int | None) -> dict[str, int | None]:
            value = None if end is None else max(0, (end - rec.created) // 60_000)
            return {"calendar": value, "business": value}

        solved = d.get("_solved_at")
        first_reply = d.get("_assigned_at") if (d.get("_comment_count") or 0) > 1 else None
        return {
            "url": f"{self.sim.url}/api/v2/ticket_metrics/{rec.id}.json",
            "id": 5_000_000_000 + int(rec.id),
            "ticket_id": int(rec.id),
            "created_at": iso_s(rec.created),
            "updated_at": iso_s(rec.updated),
            "group_stations": 1,
            "assignee_stations": 1 if d.get("assignee_id") else 0,
            "reopens": d.get("_reopens") or 0,
            "replies": max(0, (d.get("_comment_count") or 1) - 1),
            **{k: v for k, v in self._dates(rec).items()},
            "reply_time_in_minutes": minutes(first_reply),
            "first_resolution_time_in_minutes": minutes(solved),
            "full_resolution_time_in_minutes": minutes(solved),
            "agent_wait_time_in_minutes": minutes(solved),
            "requester_wait_time_in_minutes": minutes(solved),
            "on_hold_time_in_minutes": {"calendar": 0, "business": 0},
        }

    def _render_users(self, rec: Record, include: set[str]) -> dict[str, Any]:
        d = rec.data
        return {
            "id": int(rec.id),
            "url": self._url("users", rec.id),
            "name": d.get("name"),
            "email": d.get("email"),
            "phone": d.get("phone"),
            "organization_id": d.get("organization_id"),
            "role": d.get("role"),
            "active": not rec.deleted,
            "verified": bool(d.get("verified", True)),
            "suspended": False,
            "shared": False,
            "external_id": d.get("external_id"),
            "time_zone": d.get("time_zone"),
            "locale": d.get("locale"),
            "tags": d.get("tags") or [],
            "user_fields": d.get("user_fields") or {},
            "created_at": iso_s(rec.created),
            "updated_at": iso_s(rec.updated),
            "last_login_at": None,
        }

    def _render_organizations(self, rec: Record, include: set[str]) -> dict[str, Any]:
        d = rec.data
        return {
            "url": self._url("organizations", rec.id),
            "id": int(rec.id),
            "name": d.get("name"),
            "shared_tickets": False,
            "shared_comments": False,
            "external_id": d.get("external_id"),
            "domain_names": d.get("domain_names") or [],
            "details": d.get("details"),
            "notes": d.get("notes"),
            "group_id": d.get("group_id"),
            "tags": d.get("tags") or [],
            "organization_fields": d.get("organization_fields") or {},
            "created_at": iso_s(rec.created),
            "updated_at": iso_s(rec.updated),
            "deleted_at": _iso(rec.deleted_at) if rec.deleted else None,
        }

    def event_payload(self, event: Event) -> dict[str, Any]:
        rec = event.record
        data: dict[str, Any] = {
            "object": self.render(rec, {"dates"} if rec.type == "tickets" else set())
        }
        if event.previous:
            data["previous_attributes"] = event.previous
        return {
            "id": event.id,
            "object": "event",
            "type": event.type,
            "created": event.created // 1000,
            "time": iso_s(event.created),
            "system": "helpdesk",
            "subject": f"zen:{SINGULAR[rec.type]}:{rec.id}",
            "data": data,
        }

    # -- exports ------------------------------------------------------------------------

    def _include(self, req: Request) -> set[str]:
        return set(req.csv("include"))

    def _sideloads(self, obj_type: str, records: list[Record], include: set[str]) -> dict:
        out: dict[str, Any] = {}
        if obj_type != "tickets":
            return out
        if "metric_sets" in include:
            out["metric_sets"] = [self.metric_set(r) for r in records]
        if "users" in include:
            ids = {
                str(r.data.get(k))
                for r in records
                for k in ("requester_id", "submitter_id", "assignee_id")
                if r.data.get(k)
            }
            users = [self.world.get("users", i) for i in sorted(ids)]
            out["users"] = [self.render(u) for u in users if u is not None]
        if "organizations" in include:
            ids = {str(r.data["organization_id"]) for r in records if r.data.get("organization_id")}
            orgs = [self.world.get("organizations", i) for i in sorted(ids)]
            out["organizations"] = [self.render(o) for o in orgs if o is not None]
        return out

    def _exportable(self, req: Request, obj_type: str) -> list[Record]:
        records = self.world.records(obj_type, deleted=None)
        if obj_type == "tickets" and (req.arg("exclude_deleted") or "").lower() == "true":
            records = [r for r in records if not r.deleted]
        horizon = self.world.now_ms() - int(self.sim.faults.get("incremental_lag") * 1000)
        records = [r for r in records if r.updated <= horizon]
        records.sort(key=_pos)
        return records

    def _start_time(self, req: Request) -> int:
        raw = req.arg("start_time")
        if raw in (None, ""):
            raise ApiError(400, "start_time is required", code="InvalidValue")
        try:
            start = int(raw)
        except ValueError:
            raise ApiError(
                400, "start_time must be a unix time in seconds", code="InvalidValue"
            ) from None
        if start * 1000 > self.world.now_ms():
            raise ApiError(400, "start_time cannot be in the future", code="InvalidValue")
        return start

    def _cursor_export(self, req: Request, obj_type: str) -> Response:
        per_page = req.int_arg("per_page", 1000, 1, 1000)
        include = self._include(req)
        cursor = req.arg("cursor")
        position = _decode(cursor) if cursor else (self._start_time(req) * 1000 - 1, BIG)
        records = self._exportable(req, obj_type)
        after = [r for r in records if _pos(r) > position]
        earlier = [r for r in records if _pos(r) <= position][-per_page:]
        page = after[:per_page]
        new_cursor = _encode(_pos(page[-1]) if page else position)
        served = self.page_of(page, earlier)
        params = {
            "cursor": new_cursor,
            "per_page": req.arg("per_page"),
            "include": req.arg("include"),
            "exclude_deleted": req.arg("exclude_deleted"),
        }
        return Response(
            200,
            {
                obj_type: [self.render(r, include) for r in served],
                "after_url": link(req, req.path, params),
                "after_cursor": new_cursor,
                "before_url": None,
                "before_cursor": None,
                "end_of_stream": len(after) <= per_page,
                **self._sideloads(obj_type, served, include),
            },
        )

    def _time_export(self, req: Request, obj_type: str) -> Response:
        start = self._start_time(req)
        per_page = req.int_arg("per_page", 1000, 1, 1000)
        include = self._include(req)
        records = [r for r in self._exportable(req, obj_type) if r.updated >= start * 1000]
        page = records[:per_page]
        while (
            len(page) < len(records)
            and records[len(page)].updated // 1000 == page[-1].updated // 1000
        ):
            page.append(records[len(page)])  # never split one second across pages
        end_time = page[-1].updated // 1000 if page else start
        if end_time == start and len(page) < len(records):
            end_time += 1
        earlier = [r for r in self._exportable(req, obj_type) if r.updated < start * 1000]
        served = self.page_of(page, earlier[-per_page:])
        params = {
            "start_time": end_time,
            "per_page": req.arg("per_page"),
            "include": req.arg("include"),
        }
        return Response(
            200,
            {
                obj_type: [self.render(r, include) for r in served],
                "next_page": link(req, req.path, params),
                "count": len(served),
                "end_time": end_time,
                "end_of_stream": len(page) == len(records),
                **self._sideloads(obj_type, served, include),
            },
        )

    def export_tickets_cursor(self, req: Request) -> Response:
        return self._cursor_export(req, "tickets")

    def export_users_cursor(self, req: Request) -> Response:
        return self._cursor_export(req, "users")

    def export_tickets_time(self, req: Request) -> Response:
        return self._time_export(req, "tickets")

    def export_users_time(self, req: Request) -> Response:
        return self._time_export(req, "users")

    def export_organizations_time(self, req: Request) -> Response:
        return self._time_export(req, "organizations")

    # -- lists and reads ----------------------------------------------------------------

    def _list(self, req: Request, obj_type: str, keep: Callable[[Record], bool]) -> Response:
        include = self._include(req)
        records = sorted(
            (r for r in self.world.records(obj_type) if keep(r)), key=lambda r: int(r.id)
        )
        if "page[size]" in req.query or "page[after]" in req.query:
            return self._cursor_list(req, obj_type, records, include)
        page = req.int_arg("page", 1, 1, 10**9)
        per_page = req.int_arg("per_page", 100, 1, 100)
        if page > 100:
            raise ApiError(
                400,
                "Offset pagination is limited to the first 100 pages. "
                "Use cursor pagination instead.",
                code="InvalidPaginationParameter",
            )
        start = (page - 1) * per_page
        chunk = records[start : start + per_page]
        earlier = records[max(0, start - per_page) : start]
        served = self.page_of(chunk, earlier)

        def page_url(n: int) -> str:
            return link(
                req,
                req.path,
                {**{k: v[0] for k, v in req.query.items()}, "page": n, "per_page": per_page},
            )

        return Response(
            200,
            {
                obj_type: [self.render(r, include) for r in served],
                "next_page": page_url(page + 1) if start + per_page < len(records) else None,
                "previous_page": page_url(page - 1) if page > 1 else None,
                "count": len(records),
                **self._sideloads(obj_type, served, include),
            },
        )

    def _cursor_list(
        self, req: Request, obj_type: str, records: list[Record], include: set[str]
    ) -> Response:
        size = req.int_arg("page[size]", 100, 1, 100)
        after = req.arg("page[after]")
        start = 0
        if after:
            last = _decode(after)[1]
            start = next((i for i, r in enumerate(records) if int(r.id) > last), len(records))
        chunk = records[start : start + size]
        has_more = start + size < len(records)
        after_cursor = _encode((0, int(chunk[-1].id))) if chunk else None
        served = self.page_of(chunk, records[max(0, start - size) : start])
        next_url = (
            link(req, req.path, {"page[size]": size, "page[after]": after_cursor})
            if has_more
            else None
        )
        return Response(
            200,
            {
                obj_type: [self.render(r, include) for r in served],
                "meta": {
                    "has_more": has_more,
                    "after_cursor": after_cursor,
                    "before_cursor": _encode((0, int(chunk[0].id))) if chunk else None,
                },
                "links": {"next": next_url, "prev": None},
            },
        )

    def _get(self, obj_type: str, oid: str) -> Record:
        rec = self.world.get(obj_type, oid, include_deleted=False)
        if rec is None:
            raise ApiError(404, "Not found", code="RecordNotFound")
        return rec

    def me(self, req: Request) -> Response:
        email = str(self.sim.credentials.get("email") or "")
        agents = _agents(self.world)
        agent = next((a for a in agents if a.data.get("email") == email), None)
        body = (
            self.render(agent)
            if agent
            else {
                "id": 360_000_000_000,
                "name": "API Admin",
                "email": email,
                "role": "admin",
                "active": True,
            }
        )
        body["role"] = "admin"
        return Response(200, {"user": body})

    def list_tickets(self, req: Request) -> Response:
        return self._list(req, "tickets", lambda r: True)

    def get_ticket(self, req: Request, oid: str) -> Response:
        return Response(200, {"ticket": self.render(self._get("tickets", oid), self._include(req))})

    def ticket_metrics(self, req: Request, oid: str) -> Response:
        return Response(200, {"ticket_metric": self.metric_set(self._get("tickets", oid))})

    def list_users(self, req: Request) -> Response:
        roles = req.csv("role") + req.csv("role[]")
        return self._list(req, "users", lambda r: not roles or r.data.get("role") in roles)

    def get_user(self, req: Request, oid: str) -> Response:
        return Response(200, {"user": self.render(self._get("users", oid))})

    def list_organizations(self, req: Request) -> Response:
        return self._list(req, "organizations", lambda r: True)

    def get_organization(self, req: Request, oid: str) -> Response:
        return Response(200, {"organization": self.render(self._get("organizations", oid))})

    # -- writes -------------------------------------------------------------------------

    def _body(self, req: Request, key: str) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get(key), dict):
            raise ApiError(400, f'the body must be {{"{key}": {{...}}}}', code="InvalidValue")
        return body[key]

    def _ids(self, values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key in INT_FIELDS:
            if key in values:
                try:
                    out[key] = _int(values[key])
                except (TypeError, ValueError):
                    raise _invalid(key, f"{key}: must be an integer") from None
        for key, obj_type in (
            ("requester_id", "users"),
            ("assignee_id", "users"),
            ("organization_id", "organizations"),
        ):
            if out.get(key) and self.world.get(obj_type, out[key], include_deleted=False) is None:
                raise _invalid(key, f"{key}: {out[key]} does not exist")
        return out

    def _ticket_changes(self, current: Record | None, given: dict[str, Any]) -> dict[str, Any]:
        data = current.data if current else {}
        changes: dict[str, Any] = self._ids(given)
        for key in ("subject", "external_id", "due_at"):
            if key in given:
                changes[key] = given[key]
        for key, allowed in (("priority", PRIORITIES), ("type", TICKET_TYPES)):
            if key in given:
                if given[key] not in (*allowed, None):
                    raise _invalid(key, f"{key.title()}: {given[key]} is not valid")
                changes[key] = given[key]
        tags = (
            list(given["tags"])
            if isinstance(given.get("tags"), list)
            else list(data.get("tags") or [])
        )
        tags += [t for t in given.get("additional_tags") or [] if t not in tags]
        tags = [t for t in tags if t not in (given.get("remove_tags") or [])]
        if tags != (data.get("tags") or []):
            changes["tags"] = tags
        if isinstance(given.get("custom_fields"), list):
            changes["custom_fields"] = given["custom_fields"]
        comment = given.get("comment")
        if isinstance(comment, dict) and (comment.get("body") or comment.get("html_body")):
            changes["_comment_count"] = (data.get("_comment_count") or 0) + 1
            changes["_latest_comment_at"] = self.world.now_ms()
            changes["_last_comment"] = {
                "body": comment.get("body") or comment.get("html_body"),
                "public": bool(comment.get("public", True)),
            }
        if "status" in given and given["status"] != data.get("status"):
            status = given["status"]
            if status not in TICKET_STATUSES:
                raise _invalid("status", f"Status: {status} is not valid")
            if status == "new" and current is not None:
                raise _invalid("status", "Status: new is not valid for a ticket that was opened")
            agents = _agents(self.world)
            agent = (
                changes.get("assignee_id")
                or data.get("assignee_id")
                or (int(agents[0].id) if agents else None)
            )
            if current is not None:
                changes.update(status_changes(self.world, current, status, agent))
            else:
                changes["status"] = status
        return changes

    def _audit(self, ticket: Record, changes: dict[str, Any], before: dict[str, Any]) -> dict:
        events = []
        for i, (key, value) in enumerate(changes.items()):
            if key == "_last_comment":
                events.append(
                    {
                        "id": i + 1,
                        "type": "Comment",
                        "body": value["body"],
                        "public": value["public"],
                    }
                )
            elif not key.startswith("_"):
                events.append(
                    {
                        "id": i + 1,
                        "type": "Change",
                        "field_name": key,
                        "value": value,
                        "previous_value": before.get(key),
                    }
                )
        return {
            "id": ticket.version,
            "ticket_id": int(ticket.id),
            "created_at": iso_s(ticket.updated),
            "author_id": None,
            "via": {"channel": "api"},
            "metadata": {"system": {"client": "Concord"}},
            "events": events,
        }

    def update_ticket(self, req: Request, oid: str) -> Response:
        current = self._get("tickets", oid)
        given = self._body(req, "ticket")
        if current.data.get("status") == "closed":
            raise _invalid(
                "status", "Status: closed prevents ticket update", "ClosedPreventsUpdate"
            )
        if given.get("safe_update") and given.get("updated_stamp") != iso_s(current.updated):
            raise ApiError(
                409,
                "Safe Update prevented the update due to outdated ticket data. "
                "Please fetch the latest ticket data and try again.",
                code="UpdateConflict",
            )
        changes = self._ticket_changes(current, given)
        rec = self.world.update("tickets", oid, changes)
        return Response(
            200, {"ticket": self.render(rec), "audit": self._audit(rec, changes, current.data)}
        )

    def create_ticket(self, req: Request) -> Response:
        given = self._body(req, "ticket")
        comment = given.get("comment") or {}
        body = (
            comment.get("body") or comment.get("html_body") if isinstance(comment, dict) else None
        )
        if not body:
            raise _invalid("description", "Description: cannot be blank", "BlankValue")
        requester = given.get("requester")
        if not given.get("requester_id") and isinstance(requester, dict) and requester.get("email"):
            email = str(requester["email"]).lower()
            found = next(
                (
                    u
                    for u in self.world.records("users")
                    if (u.data.get("email") or "").lower() == email
                ),
                None,
            )
            if found is None:
                found = self.world.create(
                    "users",
                    {
                        "name": requester.get("name") or email.split("@")[0],
                        "email": email,
                        "phone": None,
                        "organization_id": None,
                        "role": "end-user",
                        "external_id": None,
                        "time_zone": None,
                        "locale": "en-US",
                        "tags": [],
                        "user_fields": {},
                        "verified": False,
                    },
                )
            given = {**given, "requester_id": int(found.id)}
        if not given.get("requester_id"):
            raise _invalid("requester", "Requester: cannot be blank", "BlankValue")
        changes = self._ticket_changes(None, {k: v for k, v in given.items() if k != "comment"})
        requester_rec = self.world.get("users", changes["requester_id"])
        now = self.world.now_ms()
        status = changes.pop("status", None) or ("open" if changes.get("assignee_id") else "new")
        data = {
            "subject": body[:80],
            "description": body,
            "type": None,
            "priority": None,
            "submitter_id": changes["requester_id"],
            "assignee_id": None,
            "organization_id": requester_rec.data.get("organization_id") if requester_rec else None,
            "group_id": None,
            "external_id": None,
            "tags": [],
            "custom_fields": [],
            "due_at": None,
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            **changes,
            "status": status,
            "_solved_at": now if status in ("solved", "closed") else None,
            "_status_at": now,
            "_assigned_at": now if changes.get("assignee_id") else None,
            "_reopens": 0,
            "_comment_count": 1,
            "_latest_comment_at": now,
        }
        data["_initially_assigned_at"] = data["_assigned_at"]
        rec = self.world.create("tickets", data)
        return Response(201, {"ticket": self.render(rec), "audit": self._audit(rec, data, {})})

    def delete_ticket(self, req: Request, oid: str) -> Response:
        self._get("tickets", oid)
        self.world.delete("tickets", oid)
        return Response(204)

    def _user_changes(self, current: Record | None, given: dict[str, Any]) -> dict[str, Any]:
        changes = {k: v for k, v in self._ids(given).items() if k == "organization_id"}
        for key in (
            "name",
            "email",
            "phone",
            "external_id",
            "time_zone",
            "locale",
            "role",
            "verified",
        ):
            if key in given:
                changes[key] = given[key]
        for key in ("tags", "user_fields"):
            if key in given:
                changes[key] = given[key]
        if changes.get("role") not in (None, "end-user", "agent", "admin"):
            raise _invalid("role", f"Role: {changes['role']} is not valid")
        email = (changes.get("email") or "").lower()
        if email:
            for other in self.world.records("users"):
                if (other.data.get("email") or "").lower() == email and (
                    current is None or other.id != current.id
                ):
                    raise _invalid(
                        "email",
                        f"Email: {email} is already being used by another user",
                        "DuplicateValue",
                    )
        return changes

    def create_user(self, req: Request) -> Response:
        given = self._body(req, "user")
        if not given.get("name"):
            raise _invalid("name", "Name: is too short (minimum one character)", "BlankValue")
        changes = self._user_changes(None, given)
        data = {
            "name": None,
            "email": None,
            "phone": None,
            "organization_id": None,
            "role": "end-user",
            "external_id": None,
            "time_zone": None,
            "locale": "en-US",
            "tags": [],
            "user_fields": {},
            "verified": False,
            **changes,
        }
        return Response(201, {"user": self.render(self.world.create("users", data))})

    def update_user(self, req: Request, oid: str) -> Response:
        current = self._get("users", oid)
        changes = self._user_changes(current, self._body(req, "user"))
        return Response(200, {"user": self.render(self.world.update("users", oid, changes))})

    def delete_user(self, req: Request, oid: str) -> Response:
        self._get("users", oid)
        return Response(200, {"user": self.render(self.world.delete("users", oid))})

    def _org_changes(self, current: Record | None, given: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        for key in (
            "name",
            "details",
            "notes",
            "external_id",
            "tags",
            "organization_fields",
            "domain_names",
        ):
            if key in given:
                changes[key] = given[key]
        name = (changes.get("name") or "").strip().lower()
        if name:
            for other in self.world.records("organizations"):
                if (other.data.get("name") or "").strip().lower() == name and (
                    current is None or other.id != current.id
                ):
                    raise _invalid("name", "Name: has already been taken", "DuplicateValue")
        return changes

    def create_organization(self, req: Request) -> Response:
        given = self._body(req, "organization")
        if not given.get("name"):
            raise _invalid("name", "Name: cannot be blank", "BlankValue")
        data = {
            "name": None,
            "details": None,
            "notes": None,
            "external_id": None,
            "group_id": None,
            "tags": [],
            "organization_fields": {},
            "domain_names": [],
            **self._org_changes(None, given),
        }
        rec = self.world.create("organizations", data)
        return Response(201, {"organization": self.render(rec)})

    def update_organization(self, req: Request, oid: str) -> Response:
        current = self._get("organizations", oid)
        changes = self._org_changes(current, self._body(req, "organization"))
        rec = self.world.update("organizations", oid, changes)
        return Response(200, {"organization": self.render(rec)})

    def delete_organization(self, req: Request, oid: str) -> Response:
        self._get("organizations", oid)
        self.world.delete("organizations", oid)
        return Response(204)
