"""What clean-up does with each preview: delete when the pull request is closed or the preview stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from pipe.preview.cleanup import decide

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def preview(days_ago: float | None, created_days_ago: float | None = None) -> SimpleNamespace:
    def at(days: float | None) -> datetime | None:
        return None if days is None else NOW - timedelta(days=days)

    return SimpleNamespace(updated=at(days_ago), created=at(created_days_ago))


@pytest.mark.parametrize("state", ["MERGED", "DECLINED", "SUPERSEDED"])
@pytest.mark.parametrize("ttl", [None, 14])
def test_closed_pull_request_is_deleted(state: str, ttl: int | None) -> None:
    found = preview(1)
    decision = decide("etl/etl-pr-7", found, "7", state, ttl, NOW)
    assert decision.delete is True
    assert state.lower() in decision.why and "#7" in decision.why
    assert decision.name == "etl/etl-pr-7" and decision.pr == "7" and decision.deployment is found  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("ttl", [None, 14])
def test_open_and_fresh_is_kept(ttl: int | None) -> None:
    decision = decide("etl/etl-pr-7", preview(1), "7", "OPEN", ttl, NOW)
    assert decision.delete is False
    assert "open" in decision.why


def test_open_but_stale_is_deleted() -> None:
    decision = decide("etl/etl-pr-7", preview(20), "7", "OPEN", 14, NOW)
    assert decision.delete is True
    assert "20 days" in decision.why and "PREVIEW_TTL_DAYS=14" in decision.why


def test_open_without_ttl_is_kept_however_old() -> None:
    assert decide("etl/etl-pr-7", preview(400), "7", "OPEN", None, NOW).delete is False


def test_ttl_only_fresh_is_kept() -> None:
    decision = decide("etl/etl-pr-7", preview(3), "7", None, 14, NOW)
    assert decision.delete is False
    assert "3 days ago" in decision.why and "PREVIEW_TTL_DAYS=14" in decision.why


def test_ttl_only_stale_is_deleted() -> None:
    decision = decide("etl/etl-pr-7", preview(15), "7", None, 14, NOW)
    assert decision.delete is True
    assert "PREVIEW_TTL_DAYS=14" in decision.why


def test_ttl_boundary() -> None:
    assert decide("n", preview(14), "7", None, 14, NOW).delete is True
    assert decide("n", preview(13.9), "7", None, 14, NOW).delete is False


def test_updated_none_falls_back_to_created() -> None:
    assert decide("n", preview(None, created_days_ago=30), "7", None, 14, NOW).delete is True
    assert decide("n", preview(None, created_days_ago=2), "7", None, 14, NOW).delete is False


def test_updated_wins_over_created() -> None:
    assert decide("n", preview(2, created_days_ago=300), "7", None, 14, NOW).delete is False


def test_unknown_age_is_kept() -> None:
    decision = decide("n", preview(None, None), "7", None, 14, NOW)
    assert decision.delete is False
    assert "unknown" in decision.why
