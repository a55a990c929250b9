"""Zendesk Support: organizations, end users and tickets.

Tickets come from the incremental cursor export: the first pull sends ``start_time``,
later pulls the ``after_cursor`` Zendesk returned, until ``end_of_stream``. Organizations
and users page with ``page`` / ``per_page`` until ``next_page`` is null. Authentication is
an API token: Basic ``{email}/token:{api_token}``. Tickets ask for the ``dates`` sideload,
whose ``solved_at`` is the resolution time.

Zendesk's own webhooks carry a payload each account designs; the ``webhook`` block here
routes Concord-signed events (``concord_v1``: a relay, or the simulator) whose
``data.object`` is the ticket, user or organization as the API returns it.

Organizations and end users have separate id sequences, yet both can be a customer (an
organization, or a user with none: a person). Their external ids are therefore prefixed
per object type, ``organization:<id>`` and ``user:<id>``, in every mapping that names them
(users' organization, tickets' organization or requester); the push spec strips it.
"""

from __future__ import annotations

from typing import Any

PAGES = {
    "type": "page",
    "param": "page",
    "size_param": "per_page",
    "size": 100,
    "next_path": "next_page",
}

TICKET_STATUS = {
    "new": "new",
    "open": "open",
    "pending": "pending",
    "hold": "pending",
    "solved": "solved",
    "closed": "closed",
    "deleted": "closed",  # also reported as a delete through deleted_path
}


USER_FIELDS = {
    "name.first": "first_name",
    "name.last": "last_name",
    "email": "email",
    "phone": "phone",
}


ORGANIZATION_ID = "organization:"
USER_ID = "user:"


def _routes(name: str, stream: str, events: tuple[str, ...]) -> dict[str, Any]:
    return {f"{name}.{e}": {"stream": stream, "object_path": "data.object"} for e in events}


def config(base_url: str) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "auth": {"type": "basic", "username": "{email}/token", "password": "{api_token}"},
        "timeout": 20,
        "streams": {
            "organizations": {
                "path": "/api/v2/organizations.json",
                "record_path": "organizations",
                "pagination": PAGES,
                "entity": "customer",
                "mapping": {
                    "external_id": {"field": "id", "prefix": ORGANIZATION_ID},
                    "updated_at": "updated_at",
                    "fields": {"name": "name", "domain_names.0": "website"},
                },
            },
            # End users with an organization are its contacts; end users without one are
            # the help desk's private customers (persons). One endpoint, two streams.
            "users": {
                "path": "/api/v2/users.json",
                "params": {"role": "end-user"},
                "record_path": "users",
                "pagination": PAGES,
                "select": {"path": "organization_id", "present": True},
                "entity": "contact",
                "transform": {"name": "split_name"},
                "mapping": {
                    "external_id": {"field": "id", "prefix": USER_ID},
                    "updated_at": "updated_at",
                    "fields": USER_FIELDS,
                    "refs": {"customer": {"field": "organization_id", "prefix": ORGANIZATION_ID}},
                },
            },
            "people": {
                "path": "/api/v2/users.json",
                "params": {"role": "end-user"},
                "record_path": "users",
                "pagination": PAGES,
                "select": {"path": "organization_id", "present": False},
                "entity": "customer",
                "transform": {"name": "split_name"},
                "mapping": {
                    "external_id": {"field": "id", "prefix": USER_ID},
                    "updated_at": "updated_at",
                    "fields": USER_FIELDS,
                },
            },
            "tickets": {
                "path": "/api/v2/incremental/tickets/cursor.json",
                "params": {"per_page": 1000, "include": "dates"},
                "record_path": "tickets",
                "incremental": {
                    "type": "response_cursor",
                    "start_param": "start_time",
                    "start": 0,
                    "param": "cursor",
                    "cursor_path": "after_cursor",
                    "end_path": "end_of_stream",
                },
                "entity": "ticket",
                "deleted_path": "status",
                "deleted_values": ["deleted"],
                "mapping": {
                    "external_id": "id",
                    "updated_at": "updated_at",
                    "fields": {
                        "subject": "subject",
                        "status": "status",
                        "priority": "priority",
                        "via.channel": "channel",
                        "created_at": "opened_at",
                        "dates.solved_at": "resolved_at",
                    },
                    "values": {"status": TICKET_STATUS},
                    # The organization's ticket, or else its requester's (a person).
                    "refs": {
                        "customer": [
                            {"field": "organization_id", "prefix": ORGANIZATION_ID},
                            {"field": "requester_id", "prefix": USER_ID},
                        ]
                    },
                },
            },
        },
        "push": {
            "organizations": {
                "create": {"path": "/api/v2/organizations.json", "method": "POST"},
                "update": {"path": "/api/v2/organizations/{id}.json", "method": "PUT"},
                "wrap": "organization",
                "id_path": "organization.id",
                "id_prefix": ORGANIZATION_ID,
            },
            "tickets": {
                "create": {"path": "/api/v2/tickets.json", "method": "POST"},
                "update": {"path": "/api/v2/tickets/{id}.json", "method": "PUT"},
                "wrap": "ticket",
                "id_path": "ticket.id",
            },
        },
        "webhook": {
            "scheme": "concord_v1",
            "tolerance_seconds": 300,
            "events": {
                **_routes("organization", "organizations", ("created", "updated", "deleted")),
                **_routes("user", "users", ("created", "updated", "deleted")),
                **_routes(
                    "ticket",
                    "tickets",
                    (
                        "created",
                        "updated",
                        "status_changed",
                        "priority_changed",
                        "comment_added",
                        "deleted",
                    ),
                ),
            },
        },
    }
