"""A broker that does not begin to reload in time: the error says what it may be busy with (its persistence save,
during which mosquitto handles no signal) and shows the end of its log, so that a failure in a run whose output is
cut short still names its cause. The "broker" is a process that ignores SIGHUP, under the stack's file layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eldercare.platform.stack import broker_auth
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.layout import broker_paths


def _started(code: str, config: Path) -> subprocess.Popen[str]:
    """A process running ``code`` whose command line names ``config`` (as the broker's does), once it has set its
    SIGHUP handler (before that, a SIGHUP would end it)."""
    process = subprocess.Popen([sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def test_a_broker_that_does_not_reload_in_time_is_an_error_naming_its_save_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = broker_paths(tmp_path)
    paths.data.mkdir(parents=True)
    paths.config.write_text("# a broker's configuration\n")
    paths.log.write_text("2026-11-24T16:50:31: Saving in-memory database to mosquitto.db.\n")
    (paths.data / "mosquitto.db").write_bytes(b"\0" * 3_000_000)
    (paths.data / "mosquitto.db.new").write_bytes(b"\0" * 1_500_000)
    deaf = (
        "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    process = _started(deaf, paths.config)
    try:
        paths.pid.write_text(f"{process.pid}\n")
        monkeypatch.setattr(broker_auth, "RELOAD_TIMEOUT", 0.5)
        with pytest.raises(StackError) as caught:
            broker_auth.reload_broker(tmp_path)
    finally:
        process.kill()
        process.wait()
    message = str(caught.value)
    assert f"sent SIGHUP to pid {process.pid} but it did not log a reload within 0.5 s" in message
    assert "mosquitto.db.new 1.5 MB, mosquitto.db 3.0 MB" in message
    assert "Saving in-memory database" in message  # the log's last lines


def test_a_broker_that_reloads_is_done_at_its_log_line(tmp_path: Path) -> None:
    paths = broker_paths(tmp_path)
    paths.data.mkdir(parents=True)
    paths.config.write_text("# a broker's configuration\n")
    paths.log.write_text("")
    log = str(paths.log)
    hears = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGHUP, lambda *_: open({log!r}, 'a').write('t: Reloading config.\\n'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = _started(hears, paths.config)
    try:
        paths.pid.write_text(f"{process.pid}\n")
        assert broker_auth.reload_broker(tmp_path) is True
    finally:
        process.kill()
        process.wait()
