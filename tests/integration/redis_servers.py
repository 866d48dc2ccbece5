"""Real redis-servers for the profile store tests: one that restarts on the same port,
one with a password, one speaking TLS only (certificates made here with openssl)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

from engine.local import LocalRedis
from engine.local.ports import LOOPBACK


class PinnedRedis(LocalRedis):
    """A redis-server that keeps its first port across stop/start, with extra options."""

    def __init__(self, *extra: str, log_path: Path | None = None) -> None:
        super().__init__(log_path=log_path)
        self._extra = list(extra)
        self._pinned: int | None = None

    def _command(
        self, tool: str, attempt: int, data_dir: Path, deadline: float
    ) -> tuple[list[str], Path]:
        cmd, cwd = super()._command(tool, attempt, data_dir, deadline)
        if self._pinned is None:
            self._pinned = self.port
        else:
            cmd[cmd.index("--port") + 1] = str(self._pinned)
            self._port = self._pinned
        return [*cmd, *self._extra], cwd

    def _ready(self, deadline: float) -> bool:
        if "--requirepass" not in self._extra:
            return super()._ready(deadline)
        # PING without AUTH answers -NOAUTH: the server is up.
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"-NOAUTH")
        except OSError:
            if time.monotonic() >= deadline:
                raise RuntimeError("redis-server with a password did not start") from None
            return False


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (
        folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "2", "-subj", "/CN=journey test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=localhost")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return {"ca": ca, "cert": crt, "key": key}


class TlsRedis(LocalRedis):
    """A redis-server that accepts TLS connections only, on :attr:`port`."""

    def __init__(self, certs: dict[str, Path], *extra: str) -> None:
        super().__init__()
        self._certs = certs
        self._extra = list(extra)

    @property
    def url(self) -> str:
        return f"rediss://{LOOPBACK}:{self.port}/0"

    def _command(
        self, tool: str, attempt: int, data_dir: Path, deadline: float
    ) -> tuple[list[str], Path]:
        cmd, cwd = super()._command(tool, attempt, data_dir, deadline)
        port = cmd[cmd.index("--port") + 1]
        cmd[cmd.index("--port") + 1] = "0"  # no plain-text port
        tls = [
            "--tls-port", port,
            "--tls-cert-file", str(self._certs["cert"]),
            "--tls-key-file", str(self._certs["key"]),
            "--tls-ca-cert-file", str(self._certs["ca"]),
            "--tls-auth-clients", "no",
        ]  # fmt: skip
        return [*cmd, *tls, *self._extra], cwd

    def _ready(self, deadline: float) -> bool:
        context = ssl.create_default_context(cafile=str(self._certs["ca"]))
        try:
            with (
                socket.create_connection((LOOPBACK, self.port), timeout=0.5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                reply = sock.recv(64)
                return reply.startswith((b"+PONG", b"-NOAUTH"))
        except (OSError, ssl.SSLError):
            if time.monotonic() >= deadline:
                raise RuntimeError(f"TLS redis-server not ready; log: {self._tail()}") from None
            return False
