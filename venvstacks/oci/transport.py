"""HTTP(S) to one registry with the standard library: connections, TLS, proxies, auth, retries.

`http.client` was chosen over httpx by measurement (docs/registries.md, "Design"): it streams a
file body from disk in fixed blocks and a response body into a file with the same bounded
memory, pulls ~3x faster on loopback and adds no dependency. Requests whose body can be sent
again (bytes, or a callable that reopens a file) are retried with exponential backoff on
transient failures: connection refused or reset, 5xx, 429 (honouring `Retry-After`). Whole
operations (an upload: POST then PUT) are retried with `Transport.retrying`.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from venvstacks import __version__
from venvstacks.errors import StackError
from venvstacks.oci.auth import (
    Challenge,
    Credentials,
    basic_authorization,
    find_credentials,
    parse_challenges,
    token_from_response,
    token_request,
)
from venvstacks.oci.errors import RegistryAuthError, RegistryError, RegistryUnavailableError
from venvstacks.oci.reference import Reference

__all__ = [
    "RETRIES_ENV",
    "Body",
    "Response",
    "TransientError",
    "Transport",
    "TransportOptions",
    "registry_message",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")
Body = bytes | Callable[[], BinaryIO] | None
RETRIES_ENV = "VENVSTACKS_REGISTRY_RETRIES"
BLOCK = 1 << 20  # bytes per socket write and per read while streaming
_SMALL_BODY_LIMIT = 32 << 20  # manifests, configs and error documents are read into memory
_USER_AGENT = f"venvstacks/{__version__}"
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class TransportOptions:
    """How to reach a registry: `--plain-http`, `--insecure`, `--ca-file`, timeouts, retries."""

    plain_http: bool = False
    insecure: bool = False
    ca_file: Path | None = None
    timeout: float = 60.0  # seconds without progress on a socket
    retries: int | None = None  # None: $VENVSTACKS_REGISTRY_RETRIES, else 5
    backoff: float = 0.25  # first delay; doubles up to 8 s

    @property
    def scheme(self) -> str:
        return "http" if self.plain_http else "https"

    @property
    def attempts(self) -> int:
        if self.retries is not None:
            return self.retries + 1
        try:
            return max(0, int(os.environ.get(RETRIES_ENV, "5"))) + 1
        except ValueError:
            return 6

    def ssl_context(self) -> ssl.SSLContext:
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


class TransientError(Exception):
    """A failure worth retrying; `delay` is the server's Retry-After when it gave one."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Response:
    """A response; `body` is read for small responses, `stream()` yields a large one in blocks."""

    def __init__(self, raw: http.client.HTTPResponse, release: Callable[[bool], None]) -> None:
        self.raw = raw
        self.status = raw.status
        self._release = release
        self._done = False
        self.body = b""

    def header(self, name: str) -> str | None:
        return self.raw.getheader(name)

    def read_all(self, limit: int = _SMALL_BODY_LIMIT) -> bytes:
        length = self.raw.length  # 0 for HEAD, whatever Content-Length says
        if length is not None and length > limit:
            self.close()
            raise TransientError(f"response of {length} bytes is larger than expected")
        self.body = self.raw.read(limit + 1)[:limit]
        self.close(reusable=self.raw.isclosed())
        return self.body

    def stream(self) -> Iterator[bytes]:
        try:
            while block := self.raw.read(BLOCK):
                yield block
        finally:
            self.close(reusable=self.raw.isclosed())

    def close(self, reusable: bool = False) -> None:
        if not self._done:
            self._done = True
            self._release(reusable and not self.raw.will_close)


class Transport:
    """Requests to one registry, with its credentials and its TLS and proxy settings."""

    def __init__(
        self,
        reference: Reference,
        options: TransportOptions,
        credentials: Credentials | None = None,
        *,
        find: bool = True,
    ) -> None:
        self.options = options
        self.hostname = reference.hostname
        self.port = reference.port(not options.plain_http)
        self.registry = f"{self.hostname}:{self.port}"
        self.base = f"{options.scheme}://{reference.host}"
        found = find_credentials(self.hostname, self.port) if find else None
        self.credentials = credentials or found
        self._context = options.ssl_context() if not options.plain_http else None
        self._pool: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._basic = False
        self._bearer: Challenge | None = None
        self._tokens: dict[tuple[str, ...], str] = {}

    # -- connections ------------------------------------------------------------------------

    def _connection(
        self, scheme: str, host: str, port: int
    ) -> tuple[http.client.HTTPConnection, bool]:
        key = (scheme, host, port)
        if key in self._pool:
            return self._pool[key], True
        connection = self._open(scheme, host, port)
        self._pool[key] = connection
        return connection, False

    def _open(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        proxy = _proxy_for(scheme, host)
        timeout = self.options.timeout
        connection: http.client.HTTPConnection
        if scheme == "https":
            context = self._context or self.options.ssl_context()
            if proxy is not None:
                connection = http.client.HTTPSConnection(
                    proxy.hostname or "", proxy.port or 80, timeout=timeout, context=context,
                    blocksize=BLOCK,
                )  # fmt: skip
                connection.set_tunnel(host, port, headers=_proxy_headers(proxy))
            else:
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=context, blocksize=BLOCK
                )
        elif proxy is not None:
            connection = http.client.HTTPConnection(
                proxy.hostname or "", proxy.port or 80, timeout=timeout, blocksize=BLOCK
            )
            connection.venvstacks_absolute = True  # type: ignore[attr-defined]
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout, blocksize=BLOCK)
        return connection

    def _drop(self, key: tuple[str, str, int]) -> None:
        connection = self._pool.pop(key, None)
        if connection is not None:
            connection.close()

    def _releaser(self, key: tuple[str, str, int]) -> Callable[[bool], None]:
        def release(reusable: bool) -> None:
            if not reusable:
                self._drop(key)

        return release

    def close(self) -> None:
        for key in list(self._pool):
            self._drop(key)

    # -- one request --------------------------------------------------------------------------

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: Body) -> Response:
        """Send once (once more at once if a kept-alive connection turned out to be closed)."""
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname or self.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for _ in range(2):
            connection, reused = self._connection(scheme, host, port)
            if getattr(connection, "venvstacks_absolute", False):
                target = url
            payload = body() if callable(body) else body
            try:
                connection.request(method, target or "/", body=payload, headers=dict(headers))
                raw = connection.getresponse()
            except ssl.SSLCertVerificationError as exc:
                self._drop(key)
                raise RegistryError(
                    self.registry,
                    f"TLS certificate not trusted ({exc.verify_message}); "
                    "give the registry's CA with --ca-file, or --insecure",
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(key)
                if reused and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    continue
                raise TransientError(_describe(exc)) from None
            finally:
                if payload is not None and not isinstance(payload, bytes):
                    payload.close()
            return Response(raw, self._releaser(key))
        raise TransientError("the connection was closed twice in a row")

    def _authorization(self, scopes: Sequence[str]) -> dict[str, str]:
        if self._bearer is not None:
            token = self._token(scopes)
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.credentials is not None:
            return {"Authorization": basic_authorization(self.credentials)}
        return {}

    def _token(self, scopes: Sequence[str]) -> str:
        assert self._bearer is not None
        wanted = tuple(sorted(set(scopes)))
        if wanted not in self._tokens:
            ask = token_request(self._bearer, wanted, self.credentials)
            response = self._send(
                ask.method, ask.url, {"User-Agent": _USER_AGENT, **ask.headers}, ask.body
            )
            body = response.read_all()
            if response.status in (401, 403):
                raise RegistryAuthError(
                    self.registry, f"the token service refused {self._who()} ({response.status})"
                )
            if response.status >= 500 or response.status == 429:
                raise TransientError(f"the token service answered {response.status}")
            if response.status != 200:
                raise RegistryAuthError(
                    self.registry, f"the token service answered {response.status}"
                )
            try:
                self._tokens[wanted] = token_from_response(body)
            except StackError as exc:
                raise RegistryAuthError(self.registry, str(exc)) from None
        return self._tokens[wanted]

    def _who(self) -> str:
        if self.credentials is None:
            return "anonymous access"
        name = self.credentials.username or "an identity token"
        return f"the credentials of {name} (from {self.credentials.source})"

    def _answer_challenge(self, response: Response, scopes: list[str], tried: bool) -> None:
        """Set up auth after a 401; AuthError when there is nothing (else) to try."""
        challenges = parse_challenges(response.header("WWW-Authenticate") or "")
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if tried or (bearer is None and basic is None):
            raise RegistryAuthError(
                self.registry, f"authentication failed with {self._who()} (401)"
            )
        if bearer is not None:
            extra = bearer.params.get("scope", "")
            scopes.extend(s for s in extra.split(" ") if s and s not in scopes)
            self._bearer = bearer
            self._tokens.clear()
            return
        if self.credentials is None or not self.credentials.has_password:
            raise RegistryAuthError(
                self.registry,
                "authentication required: no credentials (set VENVSTACKS_REGISTRY_USERNAME and "
                "VENVSTACKS_REGISTRY_PASSWORD, or log in so config.json has them)",
            )
        self._basic = True

    def request(
        self,
        method: str,
        url: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: Sequence[int] = (200,),
        stream: bool = False,
    ) -> Response:
        """One request, with auth, redirects (GET/HEAD) and transient failures as `TransientError`.

        Statuses other than 5xx/429/401 are returned for the caller to judge; 5xx and 429 raise
        `TransientError` (retried by `retrying`). The body is read unless `stream` and the status
        is in `ok`.
        """
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        wanted = list(scopes)
        tried = False
        redirects = 0
        while True:
            same_host = url.startswith(self.base)
            send = {"User-Agent": _USER_AGENT, **(headers or {})}
            if same_host:
                send.update(self._authorization(wanted))
            if body is None and method in ("POST", "PUT", "PATCH"):
                send.setdefault("Content-Length", "0")
            response = self._send(method, url, send, body)
            if response.status == 401 and same_host:
                response.read_all()
                self._answer_challenge(response, wanted, tried)
                tried = True
                continue
            if response.status in _REDIRECTS and method in ("GET", "HEAD") and redirects < 5:
                location = response.header("Location") or ""
                response.read_all()
                url = urllib.parse.urljoin(url, location)
                redirects += 1
                continue
            if response.status >= 500 or response.status == 429:
                response.read_all()
                raise TransientError(
                    f"{method} answered {response.status}{registry_message(response.body)}",
                    _retry_after(response.header("Retry-After")),
                )
            if not (stream and response.status in ok):
                response.read_all()
            return response

    def url(self, path: str) -> str:
        return self.base + path

    def retrying(self, what: str, operation: Callable[[], T]) -> T:
        """Run `operation`, again after transient failures; RegistryUnavailableError at the end."""
        attempts = self.options.attempts
        delay = self.options.backoff
        for attempt in range(1, attempts + 1):
            try:
                return operation()
            except TransientError as exc:
                if attempt == attempts:
                    raise RegistryUnavailableError(self.registry, f"{what}: {exc}") from None
                wait = exc.delay if exc.delay is not None else delay
                _log.info(
                    "%s: %s; retrying in %.2fs (%d/%d)", what, exc, wait, attempt, attempts - 1
                )
                time.sleep(min(wait, 30.0))
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the registry running?)"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the registry closed the connection"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc}); is it an HTTP registry (--plain-http)?"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def registry_message(body: bytes) -> str:
    """`: CODE message` from a distribution error document, or nothing."""
    try:
        first = json.loads(body)["errors"][0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _proxy_for(scheme: str, host: str) -> urllib.parse.SplitResult | None:
    """The proxy from `https_proxy`/`http_proxy` for `host`, unless `no_proxy` exempts it."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parts if parts.hostname else None


def _proxy_headers(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    user = urllib.parse.unquote(proxy.username)
    password = urllib.parse.unquote(proxy.password or "")
    return {"Proxy-Authorization": basic_authorization(Credentials(user, password))}
