"""Registry credentials and `WWW-Authenticate` challenges (Basic, Bearer token). No network.

Credentials come from `VENVSTACKS_REGISTRY_USERNAME` / `VENVSTACKS_REGISTRY_PASSWORD`, else from
the standard container `config.json` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`):
an `auths` entry for the registry with `auth` (base64 `user:password`) or `identitytoken` (an
OAuth2 refresh token), or a `credHelpers` / `credsStore` helper (`docker-credential-NAME get`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvstacks.errors import StackError

__all__ = [
    "PASSWORD_ENV",
    "USERNAME_ENV",
    "Challenge",
    "Credentials",
    "TokenRequest",
    "basic_authorization",
    "find_credentials",
    "parse_challenges",
    "token_from_response",
    "token_request",
]

USERNAME_ENV = "VENVSTACKS_REGISTRY_USERNAME"
PASSWORD_ENV = "VENVSTACKS_REGISTRY_PASSWORD"
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
_SCHEME = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)(?=\s|$)")


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity token (OAuth2 refresh token)."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""  # where they came from, for error messages

    @property
    def has_password(self) -> bool:
        return bool(self.username or self.password)


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: its scheme (lowercase) and parameters."""

    scheme: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class TokenRequest:
    """The HTTP request that obtains a Bearer token."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges in a `WWW-Authenticate` value (`Bearer realm="...",scope="..."`)."""
    found: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while pos < len(header):
            param = _PARAM.match(header, pos)
            if param is None:
                break
            value = param[2] if param[2] is not None else param[3]
            params[param[1].lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = param.end()
        found.append(Challenge(scheme[1].lower(), params))
    return found


def basic_authorization(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def token_request(
    challenge: Challenge, scopes: Sequence[str], credentials: Credentials | None
) -> TokenRequest:
    """The token endpoint request for a Bearer `challenge` (distribution's token auth spec)."""
    realm = challenge.params.get("realm", "")
    if not realm.startswith(("https://", "http://")):
        raise StackError(f"the registry's Bearer challenge has no usable realm ({realm!r})")
    service = challenge.params.get("service", "")
    if credentials is not None and credentials.identity_token:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.identity_token,
            "client_id": "venvstacks",
            "service": service,
            "scope": " ".join(scopes),
        }
        body = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return TokenRequest("POST", realm, headers, body)
    query = [("service", service)] if service else []
    query += [("scope", scope) for scope in scopes]
    separator = "&" if "?" in realm else "?"
    url = realm + (separator + urllib.parse.urlencode(query) if query else "")
    headers = {}
    if credentials is not None and credentials.has_password:
        headers["Authorization"] = basic_authorization(credentials)
    return TokenRequest("GET", url, headers)


def token_from_response(body: bytes) -> str:
    try:
        data = json.loads(body)
        token = data.get("token") or data.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise StackError("the registry's token endpoint answered without a token")
    return token


def _config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _normalise_host(key: str) -> str:
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    return key.split("/", 1)[0].lower()


def _host_keys(host: str, port: int) -> set[str]:
    """The `auths` keys that mean this registry ("host:port", or "host" for the default port)."""
    host = host.lower()
    keys = {f"{host}:{port}"}
    if port in (443, 80):
        keys.add(host)
    return keys


def _from_helper(helper: str, host: str, source: str) -> Credentials | None:
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "get"], input=host, capture_output=True, text=True, timeout=30, check=False
        )
        data = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    user, secret = str(data.get("Username", "")), str(data.get("Secret", ""))
    if user == "<token>":
        return Credentials(identity_token=secret, source=source)
    return Credentials(user, secret, source=source) if secret else None


def _from_entry(entry: Mapping[str, Any], source: str) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(identity_token=str(entry["identitytoken"]), source=source)
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise StackError(
                f"{source}: the registry's 'auth' value is not base64 user:password"
            ) from None
        return Credentials(user, password, source=source)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")), source=source)
    return None


def _from_config(path: Path, host: str, port: int) -> Credentials | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(f"{path}: not a readable container config.json ({exc})") from None
    if not isinstance(config, dict):
        return None
    keys = _host_keys(host, port)
    source = str(path)
    for key, entry in (config.get("auths") or {}).items():
        if _normalise_host(key) in keys and isinstance(entry, dict):
            found = _from_entry(entry, source)
            if found is not None:
                return found
    for key, helper in (config.get("credHelpers") or {}).items():
        if _normalise_host(key) in keys:
            return _from_helper(str(helper), key, source)
    if config.get("credsStore"):
        for key in sorted(keys):
            found = _from_helper(str(config["credsStore"]), key, source)
            if found is not None:
                return found
    return None


def find_credentials(
    host: str, port: int, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """The credentials for `host:port`: environment variables first, then config.json."""
    env = os.environ if environ is None else environ
    user, password = env.get(USERNAME_ENV, ""), env.get(PASSWORD_ENV, "")
    if user or password:
        return Credentials(user, password, source=f"{USERNAME_ENV}/{PASSWORD_ENV}")
    return _from_config(_config_path(env), host, port)
