"""Redis connections from the settings, what a Redis error means for the caller, and the
script the profile store writes with."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.settings import Settings


def connection_options(settings: Settings) -> dict[str, Any]:
    """``redis.asyncio.from_url`` options from the settings (the URL's own query wins)."""
    opts: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        # The store retries with its own back-off; the client fails fast.
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_password:
        opts["password"] = settings.redis_password
    if settings.redis_url.startswith("rediss://"):
        opts["ssl_cert_reqs"] = "required" if settings.redis_tls_verify else "none"
        opts["ssl_check_hostname"] = settings.redis_tls_verify
        if settings.redis_tls_ca:
            opts["ssl_ca_certs"] = settings.redis_tls_ca
        if settings.redis_tls_cert:
            opts["ssl_certfile"] = settings.redis_tls_cert
            opts["ssl_keyfile"] = settings.redis_tls_key
    return opts


def connect(settings: Settings) -> aioredis.Redis:
    """A client for ``JOURNEY_REDIS_URL`` (``redis://``, ``rediss://`` or ``unix://``)."""
    client: aioredis.Redis = aioredis.from_url(settings.redis_url, **connection_options(settings))
    return client


def describe(exc: BaseException) -> str:
    """``Type: message`` (redis-py's repr of its errors leaves the message out)."""
    return f"{type(exc).__name__}: {exc}"


def classify(exc: BaseException) -> tuple[str, bool]:
    """(error kind for the metric, whether retrying can help)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError | rx.NoPermissionError):
        return "auth", False
    if isinstance(cause, ssl.SSLCertVerificationError) or isinstance(
        exc, ssl.SSLCertVerificationError
    ):
        return "tls", False
    if isinstance(exc, rx.TimeoutError | asyncio.TimeoutError):
        return "timeout", True
    if isinstance(exc, rx.BusyLoadingError | rx.ReadOnlyError | rx.OutOfMemoryError):
        return "unavailable", True
    if isinstance(exc, rx.ConnectionError | OSError):
        return "connection", True
    if isinstance(exc, rx.ResponseError):
        return "response", False
    return "other", False


# One call per batch. KEYS: the profile hashes; ARGV[1]: a JSON array with, for KEYS[i], the
# pair [applied events of the state, its fields as a JSON object] (one argument: the client
# packs a few large arguments much faster than two per profile). Returns how many hashes
# were written.
WRITE_IF_NEWER = """
local rows = cjson.decode(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local row = rows[i]
  local stored = tonumber(redis.call('HGET', key, 'events'))
  if not stored or stored <= row[1] then
    local args = {}
    for name, value in pairs(row[2]) do
      args[#args + 1] = name
      args[#args + 1] = value
    end
    redis.call('HSET', key, unpack(args))
    written = written + 1
  end
end
return written
"""
