"""``eldercare db``'s command line takes its defaults from the code that runs the commands: one source of truth."""

from __future__ import annotations

import inspect

import pytest

import eldercare.platform.db as db_package
from eldercare.cli import build_parser
from eldercare.platform.db import migrate as mig


def test_scrub_lock_timeout_defaults_to_the_one_constant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert inspect.signature(mig.scrub).parameters["lock_timeout"].default == db_package.SCRUB_LOCK_TIMEOUT
    monkeypatch.setattr(db_package, "SCRUB_LOCK_TIMEOUT", "7s")  # a changed constant changes the command line
    parser = build_parser()
    assert parser.parse_args(["db", "scrub"]).lock_timeout == "7s"
    assert parser.parse_args(["db", "scrub", "--lock-timeout", "200ms"]).lock_timeout == "200ms"
    with pytest.raises(SystemExit):
        parser.parse_args(["db", "scrub", "--help"])
    assert "default 7s)" in " ".join(capsys.readouterr().out.split())
