"""The HTTP API every worker serves on Faust's web server (``JOURNEY_WEB_PORT``).

``/healthz`` and ``/readyz``; ``/customers/{id}`` and ``/customers/{id}/explain``
from the customers table; ``/funnel`` and ``/stages`` from this worker's live
bookkeeping, or every worker's with ``?scope=all``; the OpenAPI document at
``/openapi.json`` (``engine/worker/openapi.json``). Errors are JSON
``{"error": code, "message": text}`` with a matching status.

A customer lives in the table partition the Kafka default partitioner gives their
id. A worker that does not own that partition forwards the request to the worker
that does (the partition's host in the group's assignment, as Faust's router
knows it) and returns its answer unchanged; ``X-Journey-Worker`` names the worker
that answered. A forwarded request is never forwarded again: while partitions
move it gets a 503, and the caller retries.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from engine.customer_docs import (
    BadCustomerId,
    customer_id,
    explain_doc,
    profile_doc,
    stages_doc,
)
from engine.journey import CustomerState
from engine.journey.funnel import Funnel, FunnelError
from engine.metrics import StageKey
from engine.worker.state_store import UnreadableState, decode_state

if TYPE_CHECKING:
    from engine.worker.app import JourneyApp
    from engine.worker.observe import Observer

log = logging.getLogger(__name__)

#: Header naming the worker that answered; on a forwarded request, the one that forwarded.
WORKER_HEADER = "X-Journey-Worker"
FORWARDED_HEADER = "X-Journey-Forwarded-By"
OPENAPI = importlib.resources.files("engine.worker").joinpath("openapi.json").read_bytes()
SCOPES = ("worker", "all")

Handler = Callable[..., Awaitable[Any]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Api:
    """The routes, bound to one worker's app, table and observer."""

    def __init__(self, journey: JourneyApp, observer: Observer) -> None:
        self.journey = journey
        self.observer = observer
        self.app = journey.app
        self.model = journey.model
        self.self_url: str = str(journey.app.conf.canonical_url)
        self.timeout = aiohttp.ClientTimeout(total=journey.settings.api_timeout_s)

    def install(self) -> None:
        page = self.app.page
        routes: list[tuple[str, str, Handler]] = [
            ("/healthz", "healthz", self.healthz),
            ("/readyz", "readyz", self.readyz),
            ("/customers/{customer}", "customer", self.customer),
            ("/customers/{customer}/explain", "explain", self.explain),
            ("/funnel", "funnel", self.funnel),
            ("/stages", "stages", self.stages),
            ("/openapi.json", "openapi", self.openapi),
        ]
        for path, name, handler in routes:
            page(path, name=name)(_view(self, handler))

    # ------------------------------------------------------------------ responses

    def json(self, web: Any, doc: Any, status: int = 200) -> Any:
        return web.bytes(
            orjson.dumps(doc),
            content_type="application/json",
            status=status,
            headers={WORKER_HEADER: self.self_url},
        )

    # ------------------------------------------------------------------ health

    async def healthz(self, web: Any, request: Any) -> Any:
        return self.json(web, {"alive": True, "worker": self.self_url})

    async def readyz(self, web: Any, request: Any) -> Any:
        ready, reason = self.observer.readiness()
        doc = {
            "ready": ready,
            "reason": reason,
            "worker": self.self_url,
            "partitions": sorted(self.observer.owned),
        }
        return self.json(web, doc, 200 if ready else 503)

    async def openapi(self, web: Any, request: Any) -> Any:
        return web.bytes(OPENAPI, content_type="application/json")

    # ------------------------------------------------------------------ customers

    async def customer(self, web: Any, request: Any, customer: str) -> Any:
        state = await self._state(web, request, customer)
        if not isinstance(state, CustomerState):
            return state  # the owner's answer
        return self.json(web, profile_doc(state, self.journey.engine.pending_timers(state)))

    async def explain(self, web: Any, request: Any, customer: str) -> Any:
        state = await self._state(web, request, customer)
        if not isinstance(state, CustomerState):
            return state
        pending = self.journey.engine.pending_timers(state)
        return self.json(web, explain_doc(state, self.model, pending))

    async def _state(self, web: Any, request: Any, raw_id: str) -> CustomerState | Any:
        """The customer's state from the table, or the owner's response."""
        try:
            cid = customer_id(raw_id)
        except BadCustomerId as exc:
            raise ApiError(400, "bad_customer_id", str(exc)) from None
        self._require_ready()
        key = cid.encode("utf-8", "surrogatepass")
        view = self.observer.table
        partition = view.partition_of(key)
        if partition not in self.observer.owned:
            return await self._forward(web, request, partition)
        raw = view.get(key)
        if raw is None:
            raise ApiError(404, "unknown_customer", f"no customer {cid!r}")
        try:
            return decode_state(raw)
        except UnreadableState as exc:
            log.error("customer %r: %s", cid, exc)
            raise ApiError(500, "unreadable_state", str(exc)) from None

    def _require_ready(self) -> None:
        ready, reason = self.observer.readiness()
        if not ready:
            raise ApiError(503, "not_ready", reason)

    def _owner(self, partition: int) -> str | None:
        changelog = self.observer.changelog
        for url, topics in self.app.router.table_metadata(self.journey.table.name).items():
            if partition in topics.get(changelog, ()):
                return str(url)
        return None

    async def _forward(self, web: Any, request: Any, partition: int) -> Any:
        if request.headers.get(FORWARDED_HEADER):
            raise ApiError(
                503, "partition_moving", f"partition {partition} is moving between workers"
            )
        owner = self._owner(partition)
        if owner is None or owner.rstrip("/") == self.self_url.rstrip("/"):
            raise ApiError(503, "partition_moving", f"partition {partition} has no ready owner yet")
        url = owner.rstrip("/") + request.rel_url.raw_path_qs
        try:
            async with self.app.http_client.get(
                url, headers={FORWARDED_HEADER: self.self_url}, timeout=self.timeout
            ) as answer:
                body = await answer.read()
                return web.bytes(
                    body,
                    content_type=answer.content_type,
                    status=answer.status,
                    headers={WORKER_HEADER: answer.headers.get(WORKER_HEADER, owner)},
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(
                503,
                "owner_unreachable",
                f"the worker owning partition {partition} ({owner}) did not answer: {exc!r}",
            ) from None

    # ------------------------------------------------------------------ funnel and stages

    def _scope(self, request: Any) -> str:
        scope: str = request.query.get("scope", "worker")
        if scope not in SCOPES:
            raise ApiError(400, "bad_scope", f"scope must be one of {', '.join(SCOPES)}")
        return scope

    async def funnel(self, web: Any, request: Any) -> Any:
        scope = self._scope(request)
        self._require_ready()
        if scope == "worker":
            doc = self.observer.funnel.to_dict()
            return self.json(web, {**doc, "scope": scope, "workers": [self.self_url]})
        merged = Funnel.from_dict(self.observer.funnel.to_dict())
        others = await self._from_others("/funnel?scope=worker")
        for url, doc in others.items():
            try:
                merged.merge(Funnel.from_dict(doc))
            except FunnelError as exc:
                raise ApiError(502, "bad_worker_answer", f"{url}: {exc}") from None
        workers = sorted([self.self_url, *others])
        return self.json(web, {**merged.to_dict(), "scope": scope, "workers": workers})

    async def stages(self, web: Any, request: Any) -> Any:
        scope = self._scope(request)
        self._require_ready()
        counts: Counter[StageKey] = Counter(self.observer.gauge.totals())
        workers = [self.self_url]
        if scope == "all":
            others = await self._from_others("/stages?scope=worker")
            for url, doc in others.items():
                try:
                    for stage in doc["stages"]:
                        counts[doc["model"], stage["stage"]] += int(stage["customers"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise ApiError(502, "bad_worker_answer", f"{url}: {exc!r}") from None
            workers = sorted([self.self_url, *others])
        return self.json(web, stages_doc(self.model, counts, scope, workers))

    async def _from_others(self, path: str) -> dict[str, Any]:
        """``path`` from every other worker of the group, all or an error."""
        me = self.self_url.rstrip("/")
        urls = sorted({str(u).rstrip("/") for u in self.app.router.tables_metadata()} - {me})

        async def one(url: str) -> Any:
            async with self.app.http_client.get(
                url + path, headers={FORWARDED_HEADER: self.self_url}, timeout=self.timeout
            ) as answer:
                if answer.status != 200:
                    raise ApiError(503, "worker_not_ready", f"{url}{path} answered {answer.status}")
                return orjson.loads(await answer.read())

        try:
            docs = await asyncio.gather(*(one(url) for url in urls))
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise ApiError(503, "worker_unreachable", f"a worker did not answer: {exc!r}") from None
        return dict(zip(urls, docs, strict=True))


def _view(api: Api, handler: Handler) -> Handler:
    """A Faust page handler that turns :class:`ApiError` into its JSON answer."""

    async def view(web: Any, request: Any, **params: str) -> Any:
        try:
            return await handler(web, request, **params)
        except ApiError as exc:
            return api.json(web, {"error": exc.code, "message": exc.message}, exc.status)

    view.__name__ = handler.__name__
    view.__doc__ = handler.__doc__
    return view


def add_api(journey: JourneyApp, observer: Observer) -> Api:
    api = Api(journey, observer)
    api.install()
    return api
