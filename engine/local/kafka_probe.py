"""Readiness probe for the local Kafka broker: one raw Metadata request over a socket.

:func:`metadata_brokers` speaks just enough of the Kafka wire protocol (Metadata v4,
no topics) to tell whether a broker serves clients yet, without a client library.

Standard library only.
"""

from __future__ import annotations

import socket
import struct

from engine.local.ports import LOOPBACK

__all__ = ["ProtocolError", "metadata_brokers"]


class ProtocolError(Exception):
    """The broker's answer was cut short or is not a Metadata response we understand."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ProtocolError("connection closed by broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self._pos + size > len(self._data):
            raise ProtocolError("truncated response")
        values = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += size
        return values

    def int16(self) -> int:
        return self._take(">h")[0]

    def int32(self) -> int:
        return self._take(">i")[0]

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        if self._pos + length > len(self._data):
            raise ProtocolError("truncated string")
        raw = self._data[self._pos : self._pos + length]
        self._pos += length
        return raw.decode("utf-8")


def metadata_brokers(
    port: int, host: str = LOOPBACK, timeout: float = 2.0
) -> list[tuple[int, str, int]]:
    """Send a real Metadata (v4, no topics) request and return ``(node_id, host, port)``.

    A KRaft broker answers this only once request processing is enabled, and lists
    only *unfenced* brokers, so a non-empty answer means clients can use it. Raises
    ``OSError`` (including timeouts) or :class:`ProtocolError` when it cannot.
    """
    correlation_id = 0x4A45  # arbitrary
    client_id = b"journey-local"
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array (none); allow_auto_topic_creation=false
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 0 < size < 1 << 20:
            raise ProtocolError(f"implausible response size {size}")
        reader = _Reader(_recv_exact(sock, size))
    if reader.int32() != correlation_id:
        raise ProtocolError("correlation id mismatch")
    reader.int32()  # throttle_time_ms
    brokers: list[tuple[int, str, int]] = []
    for _ in range(reader.int32()):
        node_id = reader.int32()
        broker_host = reader.nullable_string() or ""
        broker_port = reader.int32()
        reader.nullable_string()  # rack
        brokers.append((node_id, broker_host, broker_port))
    return brokers
