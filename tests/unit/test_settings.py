from __future__ import annotations

import pytest

from engine.catalog import Catalog
from engine.settings import Settings, SettingsError, mask


def test_settings_read_from_journey_variables() -> None:
    s = Settings.from_env(
        {
            "JOURNEY_APP_ID": "a",
            "JOURNEY_PARTITIONS": "3",
            "JOURNEY_DEDUPE_WINDOW_S": "60.5",
            "JOURNEY_WEB_ENABLED": "false",
            "OTHER": "ignored",
        }
    )
    assert (s.app_id, s.partitions, s.dedupe_window_s, s.web_enabled) == ("a", 3, 60.5, False)
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"JOURNEY_PARTITIONS": "many"}, "JOURNEY_PARTITIONS='many' is not a valid int"),
        ({"JOURNEY_WEB_ENABLED": "maybe"}, "JOURNEY_WEB_ENABLED"),
        ({"JOURNEY_PROCESSING_GUARANTEE": "exactly_once"}, "at_least_once only"),
        ({"JOURNEY_STORE": "postgres://x"}, "memory:// or rocksdb://"),
        ({"JOURNEY_EVENT_LOOP": "trio"}, "uvloop or asyncio"),
        ({"JOURNEY_BATCH_MAX": "0"}, "JOURNEY_BATCH_MAX must be >= 1"),
        ({"JOURNEY_REDIS_URL": "http://x"}, "redis://"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words.replace("(", r"\(")):
        Settings.from_env(env)


def test_secrets_are_masked_when_printed() -> None:
    s = Settings().with_(redis_url="rediss://user:s3cret@cache:6380/0")
    assert "s3cret" not in repr(s)
    assert "rediss://user:***@cache:6380/0" in repr(s)
    assert mask("redis://localhost:6379") == "redis://localhost:6379"


def test_catalog_applies_prefix_touchpoints_name_and_partitions() -> None:
    cat = Catalog(Settings().with_(topic_prefix="t.", touchpoints_topic="raw-events", partitions=3))
    assert cat.name(Catalog.TOUCHPOINTS) == "raw-events"
    assert cat.name(Catalog.STAGE_CHANGES) == "t.journey.stage-changes"
    assert cat[Catalog.REKEYED].partitions == 3
    assert cat[Catalog.TIMERS].partitions == 3
    assert cat[Catalog.DEAD_LETTER].partitions == 1  # not co-partitioned: the catalog's own
    assert {s.name for s in cat.triggers()} == {
        "t.journey.triggers.nurture",
        "t.journey.triggers.churn-risk",
        "t.journey.triggers.win-back",
        "t.journey.triggers.advocacy-ask",
    }
    assert all(s.schema_path.exists() for s in cat.all())
