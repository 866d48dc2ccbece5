"""The one settings object, read from ``JOURNEY_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A ``JOURNEY_*`` variable has a value that cannot be used."""


_SECRET = re.compile(r"(//[^:/@]*:)([^@]+)(@)")


def mask(url: str) -> str:
    """Hide the password of a URL such as ``rediss://user:secret@host``."""
    return _SECRET.sub(r"\1***\3", url)


@dataclass(frozen=True, slots=True)
class Settings:
    app_id: str = "journey-engine"
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    model: str = "saas"
    topic_prefix: str = ""
    touchpoints_topic: str = ""
    partitions: int = 0  # 0: the catalog's count
    max_message_bytes: int = 32 * 1024
    dedupe_window_s: float = 24 * 3600.0
    dedupe_max_ids: int = 32
    history_limit: int = 20
    event_loop: str = "uvloop"
    batch_max: int = 1000
    batch_max_bytes: int = 1024 * 1024
    batcher_commit_interval_s: float = 1.0
    state_cache_size: int = 100_000
    store: str = "memory://"
    standby_replicas: int = 0
    data_dir: str = ".journey-data"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = True
    processing_guarantee: str = "at_least_once"
    log_level: str = "info"

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "redis_url"
        )
        return f"Settings({shown}, redis_url={mask(self.redis_url)!r})"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The ``JOURNEY_*`` variables that rebuild these settings in another process."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f"JOURNEY_{f.name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every field from ``JOURNEY_<FIELD>``; unset ones keep their defaults."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f"JOURNEY_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.partitions < 0:
            raise SettingsError("JOURNEY_PARTITIONS must be >= 0 (0: the catalog's count)")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SettingsError("JOURNEY_EVENT_LOOP must be uvloop or asyncio")
        if self.standby_replicas < 0:
            raise SettingsError("JOURNEY_STANDBY_REPLICAS must be >= 0")
        if self.state_cache_size < 1:
            raise SettingsError("JOURNEY_STATE_CACHE_SIZE must be >= 1")
        if self.batch_max < 1:
            raise SettingsError("JOURNEY_BATCH_MAX must be >= 1")
        if not 64 * 1024 <= self.batch_max_bytes <= 8 * 1024 * 1024:
            raise SettingsError("JOURNEY_BATCH_MAX_BYTES must be between 65536 and 8388608")
        if self.batcher_commit_interval_s <= 0:
            raise SettingsError("JOURNEY_BATCHER_COMMIT_INTERVAL_S must be > 0")
        if self.max_message_bytes < 256:
            raise SettingsError("JOURNEY_MAX_MESSAGE_BYTES must be >= 256")
        if self.processing_guarantee != "at_least_once":
            raise SettingsError(
                "JOURNEY_PROCESSING_GUARANTEE supports at_least_once only: Faust's "
                "exactly_once mode sends output outside its transactions (faust-streaming "
                "issues 177 and 517); repeats are dropped by messageId instead"
            )
        if not (self.store.startswith("memory://") or self.store.startswith("rocksdb://")):
            raise SettingsError("JOURNEY_STORE must be memory:// or rocksdb://")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("JOURNEY_REDIS_URL must be a redis://, rediss:// or unix:// URL")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def _convert(name: str, type_name: object, raw: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"JOURNEY_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
