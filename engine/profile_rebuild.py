"""``journey redis rebuild``: every customer's profile rewritten from the table's changelog."""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.changelog import ReadStats, latest_records
from engine.journey import CustomerState
from engine.profiles import timer_extras
from engine.redis_store import ProfileStore, RebuildReport
from engine.settings import Settings
from engine.worker.state_store import decode_state
from engine.worker.triggering import trigger_engine


async def rebuild_profiles(
    settings: Settings, topic: str, *, remove_stale: bool, timeout: float = 30.0
) -> tuple[RebuildReport, ReadStats]:
    """Write the newest state of each customer in ``topic`` (never over a newer
    profile), its pending timers included (the last trigger fields are left as
    they are: the record keeps no reason text); with ``remove_stale``, delete the
    profiles of customers not in it.

    An unreadable record raises :class:`~engine.worker.state_store.UnreadableState`.
    """
    stats = ReadStats()

    async def states() -> AsyncIterator[CustomerState]:
        async for _key, raw in latest_records(
            settings.kafka_bootstrap, topic, stats, idle_timeout_s=timeout
        ):
            yield decode_state(raw)

    engine = trigger_engine(settings)
    store = ProfileStore.from_settings(settings, derive=timer_extras(engine.pending_timers))
    try:
        report = await store.rebuild(states(), remove_stale=remove_stale)
    finally:
        await store.stop()
    return report, stats
