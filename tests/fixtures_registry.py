"""Fixtures that run a real OCI registry: Debian's `docker-registry` (CNCF distribution 2.8).

`registry` is a plain-HTTP registry on 127.0.0.1 with a free port and filesystem storage in a
temporary folder; `auth_registry` adds Basic auth (an `htpasswd -B` file, user `vs` / `secret`);
`tls_registry` serves HTTPS with a self-signed certificate for 127.0.0.1 and localhost
(`Registry.ca_file`). The access log is enabled and written to `Registry.access_log`, so tests
count the requests a client made (`Registry.requests()`), not only what ended up in storage.
Each registry is stopped by its PID. When the tools are missing and cannot be installed with
apt, the tests are skipped naming the missing tool.

The `Registry` class works outside pytest too (benchmarks/registry.py uses it).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "REGISTRY_PASSWORD",
    "REGISTRY_USER",
    "AccessLogLine",
    "Registry",
    "auth_registry",
    "ensure_registry_tools",
    "registry",
    "tls_registry",
]

REGISTRY_USER = "vs"
REGISTRY_PASSWORD = "secret"
_TOOLS = {"docker-registry": "docker-registry", "htpasswd": "apache2-utils", "openssl": "openssl"}
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


def _try_apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    for attempt in (command, None):
        if attempt is None:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            attempt = command
        done = subprocess.run(attempt, env=env, capture_output=True, check=False, timeout=600)
        if done.returncode == 0:
            return


def ensure_registry_tools() -> str | None:
    """Install the registry tools with apt when missing; the name of one still missing, or None."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        _try_apt_install(sorted({_TOOLS[t] for t in missing}))
    still = [tool for tool in _TOOLS if shutil.which(tool) is None]
    return still[0] if still else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class AccessLogLine:
    """One request the registry served."""

    method: str
    path: str
    status: int


@dataclass
class Registry:
    """A `docker-registry serve` process; `start()`, `stop()`, `kill()` and `restart()` it."""

    root: Path
    auth: bool = False
    tls: bool = False
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def access_log(self) -> Path:
        return self.root / "access.log"

    @property
    def ca_file(self) -> Path:
        return self.root / "cert.pem"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, repo: str, tag: str | None = None) -> str:
        """The `oci://` reference of `repo` (and `tag`) in this registry."""
        return f"oci://{self.host}/{repo}" + (f":{tag}" if tag else "")

    def transport_options(self) -> list[str]:
        """The CLI options a client needs to reach this registry."""
        return ["--ca-file", str(self.ca_file)] if self.tls else ["--plain-http"]

    def credentials_env(self) -> dict[str, str]:
        if not self.auth:
            return {}
        return {
            "VENVSTACKS_REGISTRY_USERNAME": REGISTRY_USER,
            "VENVSTACKS_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
        }

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
            "  secret: venvstacks-test-secret",
        ]
        if self.tls:
            lines += [
                "  tls:",
                f"    certificate: {self.ca_file}",
                f"    key: {self.root / 'key.pem'}",
            ]
        if self.auth:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: venvstacks-test",
                f"    path: {self.root / 'htpasswd'}",
            ]
        return "\n".join(lines) + "\n"

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        if self.auth and not (self.root / "htpasswd").exists():
            subprocess.run(
                ["htpasswd", "-Bbc", str(self.root / "htpasswd"), REGISTRY_USER, REGISTRY_PASSWORD],
                check=True, capture_output=True,
            )  # fmt: skip
        if self.tls and not self.ca_file.exists():
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                 "-keyout", str(self.root / "key.pem"), "-out", str(self.ca_file)],
                check=True, capture_output=True,
            )  # fmt: skip
        (self.root / "config.yml").write_text(self._config())

    def start(self, timeout: float = 20.0) -> None:
        self._prepare()
        log = self.access_log.open("ab")
        errors = (self.root / "registry.err").open("ab")
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(self.root / "config.yml")],
            stdout=log, stderr=errors, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        errors.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.root / "registry.err").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"docker-registry exited {self.process.returncode}: {err}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host} in {timeout}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the registry by its PID (TERM, then KILL after 10 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the registry by its PID, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def requests(self) -> list[AccessLogLine]:
        """Every request in the access log so far, oldest first (health probes excluded)."""
        found = []
        text = self.access_log.read_text(errors="replace") if self.access_log.exists() else ""
        for line in text.splitlines():
            match = _ACCESS.search(line)
            if match:
                found.append(AccessLogLine(match["method"], match["path"], int(match["status"])))
        return found

    def mark(self) -> int:
        """A position in the access log: pass it to `requests_since`."""
        return len(self.requests())

    def requests_since(self, mark: int) -> list[AccessLogLine]:
        return self.requests()[mark:]

    def get(self, path: str) -> bytes:
        """GET `path` from the registry as a test client (credentials included when needed)."""
        request = urllib.request.Request(f"{self.scheme}://{self.host}{path}")
        request.add_header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        if self.auth:
            token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            data: bytes = response.read()
            return data


def _running(
    tmp_path_factory: pytest.TempPathFactory, name: str, **kind: bool
) -> Iterator[Registry]:
    missing = ensure_registry_tools()
    if missing is not None:
        pytest.skip(f"{missing} is not installed and could not be installed with apt")
    instance = Registry(tmp_path_factory.mktemp(name), **kind)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry on loopback, empty, with its access log."""
    yield from _running(tmp_path_factory, "registry")


@pytest.fixture
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry that requires Basic auth (REGISTRY_USER / REGISTRY_PASSWORD)."""
    yield from _running(tmp_path_factory, "auth-registry", auth=True)


@pytest.fixture
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An HTTPS registry with a self-signed certificate (`Registry.ca_file`) and Basic auth."""
    yield from _running(tmp_path_factory, "tls-registry", tls=True, auth=True)
