"""Faust's aiokafka consumer, delivering each fetched batch under one wait.

Faust's ``Consumer._drain_messages`` hands every fetched record to the conductor
inside its own ``wait_first`` (four futures and an ``asyncio.wait`` per record),
so that a rebalance can abandon a delivery midway. The profile of a worker, and
of table recovery, which reads the changelog through the same loop, showed that
wrapper as the largest single cost. Here each ``getmany`` batch is delivered by
one coroutine under one ``wait_first``: the per-record steps (read offsets, gaps,
the conductor callback) are unchanged, and a rebalance abandons the rest of the
batch just as it abandoned the rest of the records before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport

YIELD_EVERY = 100


class BatchDeliveringConsumer(AIOKafkaConsumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - via Faust
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        async def deliver(batch: list[tuple[Any, Any]]) -> None:
            for n, (tp, message) in enumerate(batch, 1):
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                offset = message.offset
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    await callback(message)
                    set_read_offset(tp, offset)

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                batch = [item async for item in getmany(timeout=1.0)]
                await self.sleep(0)
                if batch and not self.should_stop:
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self.wait_first(deliver(batch), self.suspend_flow.wait())
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class BatchDeliveringTransport(AIOKafkaTransport):
    Consumer = BatchDeliveringConsumer
