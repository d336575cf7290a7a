"""What the demo tells its user when last month cannot be made (no services: the month's maker is replaced by
one that fails as it would, since reproducing a retention job that dropped the month's raw data takes a day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eldercare.ingest import rollups
from eldercare.platform.stack.model import Ports, StackInfo
from eldercare.simulators import demo, demo_month
from eldercare.simulators.errors import SimError
from eldercare.simulators.run.direct import Target


def _info(state: Path) -> StackInfo:
    return StackInfo(
        state_dir=state,
        ports=Ports(),
        database_url="postgresql://nobody@127.0.0.1:1/none",
        admin_database_url="postgresql://nobody@127.0.0.1:1/none",
        ca_file=state / "ca.pem",
        platform_username="eldercare",
        platform_password="unused",
    )


def _said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: Exception) -> str:
    def fails(**_: Any) -> demo_month.Verified:
        raise exc

    monkeypatch.setattr(demo_month, "live_month", fails)
    month, stopped = demo._last_month(
        _info(tmp_path), "http://127.0.0.1:1", ("a", "b"), Target("127.0.0.1", 1, None), None
    )
    assert (month, stopped) == (None, False)
    return capsys.readouterr().err


def test_a_month_whose_raw_data_was_dropped_is_not_promised_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    gone = rollups.RawDataGoneError([rollups.Dropped("bed_readings", start, start + timedelta(days=7))])
    said = _said(tmp_path, monkeypatch, capsys, gone)
    assert "was dropped by retention" in said
    assert "tried again" not in said and f"remove {tmp_path} to start afresh" in said


def test_a_passing_failure_is_tried_again_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    said = _said(tmp_path, monkeypatch, capsys, SimError("the API did not answer"))
    assert "the API did not answer" in said and "it is tried again at the next start" in said
