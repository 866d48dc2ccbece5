"""HTTP views served by every worker on Faust's web server."""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def add_metrics_page(app: faust.App, registry: CollectorRegistry) -> None:
    """``GET /metrics``: the worker's registry in the Prometheus text format."""

    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/metrics", name="metrics")(metrics)
