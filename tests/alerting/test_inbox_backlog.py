"""A backlog in the alarm inbox: people calling for help are not kept waiting behind it, and order holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from tests.alerting.conftest import alarms_of, device_id, process

from eldercare.platform.crypto import Vault
from eldercare.simulators.seed import SeededHome


def _backlog(db: str, home: SeededHome, code: str, kind: str, details: list[dict[str, object]], at: datetime) -> None:
    with psycopg.connect(db, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO alarm_inbox (event_time, device_id, institution_id, kind, detail, published_at)"
            " VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
            [
                (at + timedelta(milliseconds=n), device_id(db, code), home.institution_id, kind, json.dumps(d), at)
                for n, d in enumerate(details)
            ],
        )


def test_a_press_behind_a_backlog_is_raised_in_the_first_batch_and_its_cancel_after_it(
    db: str, vault: Vault, home: SeededHome
) -> None:
    sensor = next(d.code for d in home.devices if d.kind == "bed_sensor")
    button = next(d.code for d in home.devices if d.kind == "button")
    noon = datetime.now(UTC).replace(hour=4, minute=0)  # noon in Shanghai: no bed exit is watched by day
    _backlog(db, home, sensor, "bed_exit", [{"back": n % 2 == 1} for n in range(300)], noon)
    _backlog(db, home, button, "button", [{"action": "press"}, {"action": "cancel"}], noon + timedelta(seconds=1))

    process(db, vault, limit=200)

    [alarm] = alarms_of(db, home)
    assert (alarm["kind"], alarm["device"], alarm["state"]) == ("button", button, "cancelled")
    while process(db, vault):
        pass
    with psycopg.connect(db) as conn:
        left = conn.execute(
            "SELECT count(*) FROM alarm_inbox WHERE institution_id = %s", (home.institution_id,)
        ).fetchone()
    assert left == (0,)
    assert len(alarms_of(db, home)) == 1
