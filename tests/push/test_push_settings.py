"""CALSYNC_PUSH_LIFETIME_MINUTES: how long channels are asked to live, within Graph's limit."""

from __future__ import annotations

import pytest

from calsync.config import Config, ConfigError


def test_channels_live_4230_minutes_unless_told_otherwise(env) -> None:  # type: ignore[no-untyped-def]
    assert Config.from_env(env).push_lifetime_minutes == 4230


def test_a_lifetime_up_to_graphs_maximum_is_accepted(env) -> None:  # type: ignore[no-untyped-def]
    config = Config.from_env({**env, "CALSYNC_PUSH_LIFETIME_MINUTES": "10080"})

    assert config.push_lifetime_minutes == 10_080


@pytest.mark.parametrize("value", ["10081", "59", "three days", "-1"])
def test_a_lifetime_outside_60_to_10080_minutes_is_refused_by_name(env, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="CALSYNC_PUSH_LIFETIME_MINUTES"):
        Config.from_env({**env, "CALSYNC_PUSH_LIFETIME_MINUTES": value})
