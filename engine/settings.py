"""The one settings object, read from ``JOURNEY_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.journey.durations import parse_duration_overrides
from engine.journey.errors import ModelError
from engine.journey.policy import (
    DEFAULT_COOLDOWNS,
    parse_cooldowns,
    parse_quiet_hours,
    valid_timezone,
)
from engine.journey.trigger_rules import TriggerType


class SettingsError(ValueError):
    """A ``JOURNEY_*`` variable has a value that cannot be used."""


_SECRETS = frozenset({"redis_url", "redis_password"})
_SECRET = re.compile(r"(//[^:/@]*:)([^@]+)(@)")


def mask(url: str) -> str:
    """Hide the password of a URL such as ``rediss://user:secret@host``."""
    return _SECRET.sub(r"\1***\3", url)


@dataclass(frozen=True, slots=True)
class Settings:
    app_id: str = "journey-engine"
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    # The Redis profile store (engine/redis_store.py).
    redis_enabled: bool = True
    redis_prefix: str = "journey:"
    redis_password: str = field(default="", repr=False)  # instead of one in the URL
    redis_tls_ca: str = ""  # CA bundle that signed the server's certificate (rediss://)
    redis_tls_cert: str = ""  # client certificate, when the server asks for one
    redis_tls_key: str = ""
    redis_tls_verify: bool = True  # verify the server's certificate and host name
    redis_timeout_s: float = 2.0  # connect and per-command socket timeout
    redis_batch_size: int = 500  # profiles per pipelined write
    redis_flush_interval_s: float = 0.05  # longest wait before changed profiles are written
    redis_max_pending: int = 200_000  # changed profiles kept while Redis is slow or down
    redis_retry_max_s: float = 5.0  # longest back-off between retries
    model: str = "saas"
    topic_prefix: str = ""
    touchpoints_topic: str = ""
    partitions: int = 0  # 0: the catalog's count
    max_message_bytes: int = 32 * 1024
    dedupe_window_s: float = 24 * 3600.0
    dedupe_max_ids: int = 32
    history_limit: int = 20
    event_loop: str = "uvloop"
    batch_max: int = 1000  # touchpoints per fetch of the input reader
    input_commit_interval_s: float = 1.0
    agent_within_s: float = 0.005  # the timers agent's take window
    state_cache_size: int = 100_000
    gc_unfreeze_every: int = 50  # full collections between unfreezes; 0: CPython's own GC policy
    gc_young_threshold: int = 10_000  # allocations between young collections; 0: CPython's 700
    store: str = "memory://"
    standby_replicas: int = 0
    data_dir: str = ".journey-data"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = True
    metrics_interval_s: float = 5.0  # consumer lag and table size refresh
    api_timeout_s: float = 5.0  # a request forwarded to the worker owning a customer
    processing_guarantee: str = "at_least_once"
    log_level: str = "info"
    # Triggers, timers and the delivery policy (docs/triggers.md).
    clock: str = "wall"  # wall: the machine's clock; event: each partition's newest event time
    trigger_durations: str = ""  # per time rule, "inactive=21d,trial_stalled=10d"
    trigger_cooldowns: str = ""  # per type over the defaults, "nurture=1d"; "off": none
    trigger_daily_cap: int = 2  # triggers per customer per rolling 24 h; 0: no cap
    quiet_hours: str = "21:00-08:00"  # in the customer's zone; "off": none
    default_timezone: str = "UTC"  # when an event gave no valid context.timezone
    suppression_list: str = ""  # customer ids "a,b", or "@/path" (one id per line)
    timer_tick_s: float = 0.25  # how often due timers are looked for

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name not in _SECRETS
        )
        hidden = "'***'" if self.redis_password else "''"
        return f"Settings({shown}, redis_url={mask(self.redis_url)!r}, redis_password={hidden})"

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
        if self.gc_unfreeze_every < 0:
            raise SettingsError("JOURNEY_GC_UNFREEZE_EVERY must be >= 0 (0: no freezing)")
        if self.gc_young_threshold < 0:
            raise SettingsError("JOURNEY_GC_YOUNG_THRESHOLD must be >= 0 (0: CPython's default)")
        if self.batch_max < 1:
            raise SettingsError("JOURNEY_BATCH_MAX must be >= 1")
        if not 0 < self.agent_within_s <= 1:
            raise SettingsError("JOURNEY_AGENT_WITHIN_S must be in (0, 1]")
        if self.input_commit_interval_s <= 0:
            raise SettingsError("JOURNEY_INPUT_COMMIT_INTERVAL_S must be > 0")
        if self.max_message_bytes < 256:
            raise SettingsError("JOURNEY_MAX_MESSAGE_BYTES must be >= 256")
        if self.processing_guarantee != "at_least_once":
            raise SettingsError(
                "JOURNEY_PROCESSING_GUARANTEE supports at_least_once only: Faust's "
                "exactly_once mode sends output outside its transactions (faust-streaming "
                "issues 177 and 517); repeats are dropped by messageId instead"
            )
        if min(self.metrics_interval_s, self.api_timeout_s) <= 0:
            raise SettingsError("JOURNEY_METRICS_INTERVAL_S and JOURNEY_API_TIMEOUT_S must be > 0")
        if not (self.store.startswith("memory://") or self.store.startswith("rocksdb://")):
            raise SettingsError("JOURNEY_STORE must be memory:// or rocksdb://")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("JOURNEY_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        tls = [n for n in ("redis_tls_ca", "redis_tls_cert", "redis_tls_key") if getattr(self, n)]
        if tls and not self.redis_url.startswith("rediss://"):
            names = ", ".join(f"JOURNEY_{n.upper()}" for n in tls)
            raise SettingsError(f"{names} need a rediss:// JOURNEY_REDIS_URL")
        if bool(self.redis_tls_cert) != bool(self.redis_tls_key):
            raise SettingsError("JOURNEY_REDIS_TLS_CERT and JOURNEY_REDIS_TLS_KEY go together")
        if not self.redis_prefix or any(c.isspace() for c in self.redis_prefix):
            raise SettingsError("JOURNEY_REDIS_PREFIX must be non-empty, without spaces")
        if self.redis_batch_size < 1 or self.redis_max_pending < self.redis_batch_size:
            raise SettingsError(
                "JOURNEY_REDIS_BATCH_SIZE must be >= 1 and JOURNEY_REDIS_MAX_PENDING >= it"
            )
        if min(self.redis_timeout_s, self.redis_flush_interval_s, self.redis_retry_max_s) <= 0:
            raise SettingsError(
                "JOURNEY_REDIS_TIMEOUT_S, JOURNEY_REDIS_FLUSH_INTERVAL_S and "
                "JOURNEY_REDIS_RETRY_MAX_S must be > 0"
            )
        self._validate_triggers()

    def _validate_triggers(self) -> None:
        if self.clock not in ("wall", "event"):
            raise SettingsError(
                f"JOURNEY_CLOCK must be wall (production) or event (replays, backfills, "
                f"tests), got {self.clock!r}"
            )
        if self.trigger_daily_cap < 0:
            raise SettingsError("JOURNEY_TRIGGER_DAILY_CAP must be >= 0 (0: no cap)")
        if not 0 < self.timer_tick_s <= 1:
            raise SettingsError(
                "JOURNEY_TIMER_TICK_S must be in (0, 1]: due timers fire within a second"
            )
        # The parsers of the core say what is wrong; the variable is named here.
        checks: list[tuple[str, Callable[[], object]]] = [
            ("JOURNEY_TRIGGER_DURATIONS", lambda: parse_duration_overrides(self.trigger_durations)),
            ("JOURNEY_TRIGGER_COOLDOWNS", lambda: trigger_cooldowns(self.trigger_cooldowns)),
            ("JOURNEY_QUIET_HOURS", lambda: parse_quiet_hours(self.quiet_hours)),
        ]
        for name, check in checks:
            try:
                check()
            except ModelError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        if not valid_timezone(self.default_timezone):
            raise SettingsError(
                f"JOURNEY_DEFAULT_TIMEZONE: unknown IANA time zone {self.default_timezone!r} "
                "(such as UTC or Europe/Berlin)"
            )
        suppression_list(self.suppression_list)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def trigger_cooldowns(text: str) -> dict[TriggerType, int]:
    """``JOURNEY_TRIGGER_COOLDOWNS``: empty for the defaults, ``off`` for none, or
    ``type=duration`` items that replace the defaults of the types they name."""
    if text.strip().lower() in ("off", "none"):
        return {}
    return {**DEFAULT_COOLDOWNS, **parse_cooldowns(text)}


def suppression_list(text: str) -> frozenset[str]:
    """``JOURNEY_SUPPRESSION_LIST``: comma-separated customer ids, or ``@PATH`` of a
    UTF-8 file with one id per line (blank lines and ``#`` comments left out)."""
    text = text.strip()
    if not text.startswith("@"):
        return frozenset(i.strip() for i in text.split(",") if i.strip())
    path = Path(text[1:].strip())
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"JOURNEY_SUPPRESSION_LIST: cannot read {path}: {exc}") from None
    return frozenset(s for s in (line.strip() for line in lines) if s and not s.startswith("#"))


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
