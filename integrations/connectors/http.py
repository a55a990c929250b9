"""A small HTTP client on the standard library, for connectors.

It returns every HTTP answer as a ``Response`` (status decisions belong to the connector)
and turns network failures into transient ``ConnectorError``s. Redirects are followed only
within the same origin, so credentials in headers never travel to another host.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from .base import ConnectorError

USER_AGENT = "Concord/0.1 (+https://github.com/concord-hub)"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


@dataclass
class Response:
    status: int
    url: str
    body: bytes
    headers: Message = field(default_factory=Message)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.body.decode("utf-8"))

    def excerpt(self, limit: int = 300) -> str:
        text = " ".join(self.body.decode("utf-8", errors="replace").split())
        return text if len(text) <= limit else text[:limit] + "…"


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if origin(newurl) != origin(req.full_url):
            # Returning None makes urllib raise the 3xx as an HTTPError; the connector
            # reports it as a permanent error instead of leaking credentials elsewhere.
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class HttpClient:
    def __init__(self, *, timeout: float, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._opener = urllib.request.build_opener(_SameOriginRedirects())

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """Send one request. Any HTTP status comes back as a Response; a failure to get
        one (timeout, refused, reset, DNS) raises a transient ConnectorError, an
        untrusted TLS certificate a permanent one."""
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("User-Agent", USER_AGENT)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        where = f"{method} {urlsplit(url).path or '/'}"
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return Response(
                    answer.status, answer.url, self._read(answer, where), answer.headers
                )
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, url, self._read(exc, where), exc.headers)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise ConnectorError(
                    f"{where}: TLS certificate not trusted ({reason.verify_message})",
                    permanent=True,
                ) from None
            if isinstance(reason, TimeoutError):
                raise ConnectorError(f"{where}: timed out after {self.timeout:g} s") from None
            raise ConnectorError(f"{where}: cannot connect ({reason})") from None
        except TimeoutError:
            raise ConnectorError(f"{where}: timed out after {self.timeout:g} s") from None
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            raise ConnectorError(f"{where}: connection failed ({exc!r})") from None

    def _read(self, answer: Any, where: str) -> bytes:
        body = answer.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise ConnectorError(
                f"{where}: response larger than {self.max_bytes} bytes", permanent=True
            )
        return body
