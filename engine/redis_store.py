"""The Redis profile store: customer profiles written in pipelined batches, off the hot path.

The worker hands over the states a batch changed with :meth:`ProfileStore.offer`,
which never waits: it keeps the latest state per customer in memory. A background
task (:meth:`ProfileStore.start`) writes them in pipelined batches of
``redis_batch_size``. When Redis is slow or down the task retries with exponential
back-off, counts the errors and the gap (``journey_redis_pending_profiles``), and
catches up when Redis returns. Memory is bounded: past ``redis_max_pending``
customers waiting, updates of further customers are dropped and counted, and
:attr:`ProfileStore.needs_rebuild` turns True (``journey redis rebuild`` rewrites
everything from the table).

Each batch is one Lua script call that sets a hash only if it holds no more applied
events than the state being written, so a late retry, a rebuild or a worker that
just lost the customer's partition never puts an older profile over a newer one.

Errors retrying cannot fix (a refused password or permission, a key of another type
under the prefix, a certificate that does not verify) stop the store: the next
:meth:`offer` raises :class:`ProfileStoreFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from engine.journey import CustomerState
from engine.metrics import Metrics
from engine.profiles import ProfileExtras, profile_fields, read_profile
from engine.redis_client import WRITE_IF_NEWER, classify, connect, describe
from engine.settings import Settings, mask

log = logging.getLogger(__name__)

Pending = tuple[CustomerState, ProfileExtras | None]


class ProfileStoreFailed(RuntimeError):
    """Redis refused the profile writes for a reason that retrying cannot fix."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    written: int
    kept_newer: int  # profiles Redis already held in a newer version
    removed: int  # profiles of customers not in the states given


class ProfileStore:
    """Customer profiles in Redis hashes ``{prefix}customer:{id}``."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "journey:",
        metrics: Metrics | None = None,
        batch_size: int = 500,
        flush_interval_s: float = 0.05,
        max_pending: int = 200_000,
        retry_min_s: float = 0.05,
        retry_max_s: float = 5.0,
        where: str = "redis",
        derive: Callable[[CustomerState], ProfileExtras] | None = None,
    ) -> None:
        """``derive``: extras that follow from the state itself (its pending timers),
        computed when a profile is written, so a customer changed many times between
        two writes costs one."""
        self._client = client
        self._derive = derive
        self.prefix = prefix
        self._metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._where = where
        self._script = client.register_script(WRITE_IF_NEWER)
        self._pending: dict[str, Pending] = {}
        self._inflight: dict[str, Pending] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        #: Profiles written, kept because Redis held a newer one, dropped, failed writes.
        self.written = 0
        self.kept_newer = 0
        self.dropped = 0
        self.errors = 0
        self._failing_since: float | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: Metrics | None = None,
        derive: Callable[[CustomerState], ProfileExtras] | None = None,
    ) -> ProfileStore:
        return cls(
            connect(settings),
            prefix=settings.redis_prefix,
            metrics=metrics,
            batch_size=settings.redis_batch_size,
            flush_interval_s=settings.redis_flush_interval_s,
            max_pending=settings.redis_max_pending,
            retry_max_s=settings.redis_retry_max_s,
            where=mask(settings.redis_url),
            derive=derive,
        )

    # ------------------------------------------------------------------ the hot path

    def key(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}"

    @property
    def gap(self) -> int:
        """Changed profiles not yet written (waiting or being written)."""
        return len(self._pending) + len(self._inflight)

    @property
    def needs_rebuild(self) -> bool:
        """Updates were dropped while the buffer was full: Redis misses some changes."""
        return self.dropped > 0

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def offer(
        self,
        states: Iterable[CustomerState],
        extras: Mapping[str, ProfileExtras] | None = None,
    ) -> None:
        """Queue the latest state of each customer for writing. Never waits.

        ``extras`` maps a customer id to its pending timers and last trigger, when
        the caller knows them; raises :class:`ProfileStoreFailed` once the store has
        stopped on an error retrying cannot fix.
        """
        if self._failed is not None:
            raise ProfileStoreFailed(
                f"Redis profile store stopped: {describe(self._failed)}"
            ) from self._failed
        pending, dropped = self._pending, 0
        for state in states:
            cid = state.customer_id
            extra = None if extras is None else extras.get(cid)
            older = pending.get(cid)
            if older is not None:
                pending[cid] = (state, _merge(extra, older[1]))
            elif len(pending) < self.max_pending:
                pending[cid] = (state, extra)
            else:
                dropped += 1
        if dropped:
            self.dropped += dropped
            if self._metrics is not None:
                self._metrics.redis_dropped.inc(dropped)
        if pending:
            self._idle.clear()
            self._wake.set()
        self._set_gap()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="redis-profile-store")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every offered profile is written; False if ``timeout`` passed first."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        if self._failed is not None:
            raise ProfileStoreFailed(
                f"Redis profile store stopped: {describe(self._failed)}"
            ) from self._failed
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is pending (for at most ``timeout`` s), stop the writer, close.

        Raises :class:`ProfileStoreFailed` (after closing) if the store had stopped on
        an error retrying cannot fix.
        """
        try:
            if self._task is not None and not self._task.done() and self.gap:
                written = await self.flush(timeout)
                if not written:
                    log.warning(
                        "stopping with %d customer profiles not written to %s",
                        self.gap,
                        self._where,
                    )
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
            await self._client.aclose()
        if self._failed is not None:
            raise ProfileStoreFailed(
                f"Redis profile store stopped: {describe(self._failed)}"
            ) from self._failed

    # ------------------------------------------------------------------ the writer

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            if not self._pending:
                self._wake.clear()
                self._idle.set()
                await self._wake.wait()
                if not self._pending:
                    continue
                # Let a batch's worth gather (or the interval pass) before writing.
                if len(self._pending) < self.batch_size:
                    await asyncio.sleep(self.flush_interval_s)
            try:
                await self._write_batch()
            except Exception as exc:
                kind, transient = classify(exc)
                self._count_error(kind)
                if not transient:
                    log.error("Redis profile store at %s stops: %s", self._where, describe(exc))
                    self._failed = exc
                    self._idle.set()
                    return
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning(
                        "Redis profile writes to %s failing (%s); retrying, %d profiles waiting",
                        self._where,
                        describe(exc),
                        self.gap,
                    )
                backoff = min(self.retry_max_s, max(self.retry_min_s, backoff * 2))
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if self._failing_since is not None:
                log.warning(
                    "Redis profile writes to %s resumed after %.1fs",
                    self._where,
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None

    async def _write_batch(self) -> None:
        pending = self._pending
        keys = list(itertools.islice(pending, self.batch_size))
        batch = {k: pending.pop(k) for k in keys}
        self._inflight = batch
        try:
            started = time.perf_counter()
            written = await self._write(list(batch.items()))
            if self._metrics is not None:
                self._metrics.redis_flush.observe(time.perf_counter() - started)
        except BaseException:
            self._requeue(batch)
            raise
        finally:
            self._inflight = {}
            self._set_gap()
        self.written += written
        self.kept_newer += len(batch) - written
        if self._metrics is not None:
            self._metrics.redis_written.inc(written)

    async def _write(self, items: Sequence[tuple[str, Pending]]) -> int:
        """One round trip: the batch in one script call. Returns the profiles written."""
        keys: list[str] = []
        rows: list[tuple[int, dict[str, str]]] = []
        key, derive = self.key, self._derive
        for cid, (state, extra) in items:
            if derive is not None:
                extra = derive(state).merged_over(extra)
            keys.append(key(cid))
            rows.append((state.events, profile_fields(state, extra)))
        script = self._script
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.scripts.add(script)  # type: ignore[arg-type]  # execute() loads it if missing
            pipe.evalsha(script.sha, len(keys), *keys, orjson.dumps(rows))
            [result] = await pipe.execute(raise_on_error=False)
        if isinstance(result, Exception):
            raise result
        return int(result)

    def _requeue(self, batch: dict[str, Pending]) -> None:
        pending = self._pending
        for cid, (state, extra) in batch.items():
            newer = pending.get(cid)
            if newer is None:
                pending[cid] = (state, extra)
            else:
                pending[cid] = (newer[0], _merge(newer[1], extra))

    def _count_error(self, kind: str) -> None:
        self.errors += 1
        if self._metrics is not None:
            self._metrics.redis_errors.labels(kind).inc()

    def _set_gap(self) -> None:
        if self._metrics is not None:
            self._metrics.redis_pending.set(self.gap)

    # ------------------------------------------------------------------ read and rebuild

    async def get(self, customer_id: str) -> dict[str, Any] | None:
        """A customer's stored profile (JSON-ready), or None."""
        raw = await self._client.hgetall(self.key(customer_id))
        return read_profile(raw) if raw else None

    async def rebuild(
        self,
        states: Iterable[CustomerState] | AsyncIterable[CustomerState],
        *,
        remove_stale: bool = True,
    ) -> RebuildReport:
        """Write every state given (in batches, errors raised), then, with
        ``remove_stale``, delete profiles under the prefix of customers not given.

        The ids written are kept in memory to find the stale profiles.
        """
        seen: set[str] = set()
        written = kept = 0
        batch: list[tuple[str, Pending]] = []

        async def write() -> None:
            nonlocal written, kept
            done = await self._write(batch)
            written += done
            kept += len(batch) - done
            batch.clear()

        async for state in _aiter(states):
            seen.add(state.customer_id)
            batch.append((state.customer_id, (state, None)))
            if len(batch) >= self.batch_size:
                await write()
        if batch:
            await write()
        removed = await self._remove_except(seen) if remove_stale else 0
        if self._metrics is not None:
            self._metrics.redis_written.inc(written)
        return RebuildReport(written=written, kept_newer=kept, removed=removed)

    async def _remove_except(self, keep: set[str]) -> int:
        head = f"{self.prefix}customer:"
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", head) + "*"
        stale: list[bytes] = []
        removed = 0
        async for key in self._client.scan_iter(match=pattern, count=1000):
            raw = key if isinstance(key, bytes) else str(key).encode()
            if raw.decode("utf-8", "surrogateescape")[len(head) :] not in keep:
                stale.append(raw)
            if len(stale) >= self.batch_size:
                removed += await self._client.unlink(*stale)
                stale.clear()
        if stale:
            removed += await self._client.unlink(*stale)
        return removed


def _merge(newer: ProfileExtras | None, older: ProfileExtras | None) -> ProfileExtras | None:
    if newer is None:
        return older
    return newer.merged_over(older)


async def _aiter(
    states: Iterable[CustomerState] | AsyncIterable[CustomerState],
) -> AsyncIterable[CustomerState]:
    if isinstance(states, AsyncIterable):
        async for state in states:
            yield state
    else:
        for state in states:
            yield state
