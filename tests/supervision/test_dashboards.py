"""Every panel's SQL, run as Grafana's login (made by the production reader script) against a database with data
in it (the hand-worked world, raw readings rolled up by ingest's roll-up code, frames, parked messages, gateways,
scores, a draw), must return rows of the shape its panel type needs; and the built JSON in the repository is what
the code builds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, timedelta
from typing import Any

import psycopg
import pytest
from tests.registry.support import Database
from tests.supervision.grafana_reader import END, START, Reader, queries, reader_of
from tests.supervision.world import TZ, World, local

from eldercare.dashboards import build, home, operations, regulator
from eldercare.dashboards.sql import DATASOURCE_TYPE, DATASOURCE_UID, expand
from eldercare.ingest import rollups
from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import seal_reading
from eldercare.platform.stack.model import StackInfo
from eldercare.platform.supervision import credit

NUMERIC = {"int2", "int4", "int8", "float4", "float8", "numeric"}
TIMESTAMP = {"timestamptz"}


@pytest.fixture(scope="module")
def filled(sup_db: Database, world: World, vault: Vault) -> World:
    a = world.a
    day = date(2026, 10, 30)
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        # Raw bed readings of BS-A0 on 30 October: one every minute from 00:00 to 11:59 local, in bed from 06:00
        # (with rates, sealed as ingest stores them).
        t0, device, sealer = local(day, 0), a.devices["BS-A0"], vault.vitals_sealer()
        with conn.cursor().copy("COPY bed_readings (time, device_id, presence, vitals_enc) FROM STDIN") as copy:
            for n in range(720):
                at = t0 + timedelta(minutes=n)
                copy.write_row((at, device, n >= 360, seal_reading(sealer, at, device, 60 + n % 20, 16)))
        rollups.rebuild(conn, vault=vault, start=t0, end=t0 + timedelta(days=1), timezone="Asia/Shanghai")
        row = conn.execute(
            "SELECT active_minutes FROM device_daily WHERE device_id = %s AND day = %s", (a.devices["BS-A0"], day)
        ).fetchone()
        assert row == (720,), "ingest's roll-up of 720 minutes of readings"
        conn.execute(
            "INSERT INTO ingest_jobs (job, watermark, last_run_at) VALUES ('rollups', now() - interval '90 minutes',"
            " now()) ON CONFLICT (job) DO UPDATE SET watermark = excluded.watermark"
        )
        gateway = conn.execute(
            "INSERT INTO gateways (institution_id, gateway_id, last_seen_at, last_status, last_heartbeat)"
            " VALUES (%s, 'GW-DASH-A', now() - interval '5 minutes', 'heartbeat',"
            ' \'{"t": "heartbeat", "queue": {"alarm": 0, "telemetry": 12}, "dropped": 3}\') RETURNING id',
            (a.id,),
        ).fetchone()
        assert gateway is not None
        for n in range(48):
            sent = local(day, 0) + timedelta(minutes=30 * n)
            conn.execute(
                "INSERT INTO uplink_frames (sent_at, gateway_pk, epoch, seq, lane, n_msgs, received_at)"
                " VALUES (%s, %s, 1, %s, %s, 50, %s)",
                (sent, gateway[0], n, "telemetry" if n % 4 else "alarm", sent + timedelta(milliseconds=40 + n)),
            )
        conn.execute(
            "INSERT INTO uplink_gaps (gateway_pk, epoch, first_seq, last_seq, missing) VALUES (%s, 1, 100, 101, 2)",
            (gateway[0],),
        )
        conn.execute(
            # sealed as ingest parks them (the dashboards read no payload; the bytes need not open)
            "INSERT INTO parked_messages (kind, received_at, topic, payload_enc, reason) VALUES"
            " ('dead_letter', %s, 'eldercare/v1/x/y/up/telemetry', 'sealed', 'payload is not JSON'),"
            " ('quarantine', %s, 'eldercare/v1/x/y/up/telemetry', 'sealed', 'unknown device')",
            (local(day, 9), local(day, 10)),
        )
        conn.execute(
            "UPDATE alarms SET published_at = raised_at - interval '15 milliseconds' WHERE institution_id = %s",
            (a.id,),
        )

    async def scores() -> None:
        async with await psycopg.AsyncConnection.connect(sup_db.url, autocommit=True) as conn:
            await credit.compute(conn, homes=[a.id, world.b.id], start=date(2026, 10, 1), end=date(2026, 10, 30),
                                 computed_by=None)  # fmt: skip

    asyncio.run(scores())
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        draw = conn.execute(
            "INSERT INTO inspection_draws (region_code, algorithm, seed, homes_requested, inspectors_requested,"
            " team_size, home_candidates, inspector_candidates, home_candidates_sha256, inspector_candidates_sha256,"
            " drawn_homes, drawn_inspectors) VALUES ('4205', 'hmac-sha256-v1', 'dashboard-seed', 1, 1, 1, %s,"
            " '{U1}', repeat('a', 64), repeat('b', 64), %s, '{U1}') RETURNING id",
            ([a.code], [a.code]),
        ).fetchone()
        assert draw is not None
        conn.execute(
            "INSERT INTO inspections (draw_id, position, institution_id, inspector_ids, inspected_at, outcome, summary)"
            " VALUES (%s, 0, %s, '{1}', %s, 'pass', '完好')",
            (draw[0], a.id, local(day, 10)),
        )
    return world


@pytest.fixture(scope="module")
def reader(stack: StackInfo, sup_db: Database) -> Iterator[Reader]:
    """Grafana's login, made after the migrations (as on a database migrated before the script ran)."""
    with reader_of(stack, sup_db) as made:
        yield made


def _run(reader: Reader, sql_text: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    with psycopg.connect(reader.url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cur = conn.execute(sql_text.encode())
        columns = [(c.name, conn.adapters.types.get(c.type_code).name) for c in cur.description or []]  # type: ignore[union-attr]
        return columns, cur.fetchall()


def _variables(world: World) -> dict[str, dict[str, str]]:
    return {operations.UID: {}, home.UID: {"institution": str(world.a.id)}, regulator.UID: {"region": "4205"}}


def test_built_json_in_the_repository_is_current() -> None:
    check = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "dashboards", "build", "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    for uid in build.DASHBOARDS:
        on_disk = json.loads((build.GENERATED / f"{uid}.json").read_text(encoding="utf-8"))
        assert on_disk["uid"] == uid and on_disk["panels"]


def test_every_panel_returns_rows_of_its_shape(reader: Reader, filled: World) -> None:
    panels = [q for q in queries(_variables(filled)) if q.kind != "variable"]
    for query in panels:
        target, title, kind = query.target, query.name, query.kind
        assert target["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}, title
        assert "$" not in query.sql, f"{title}: unexpanded macro or variable"
        columns, rows = _run(reader, query.sql)
        assert rows, f"{title}: no rows"
        names, types = [c[0] for c in columns], [c[1] for c in columns]
        if kind == "timeseries":
            assert target["format"] == "time_series", title
            assert names[0] == "time" and types[0] in TIMESTAMP, f"{title}: {columns}"
            rest = columns[1:]
            text_columns = [n for n, t in rest if t == "text"]
            assert text_columns in ([], ["metric"]), f"{title}: {columns}"
            assert any(t in NUMERIC for _, t in rest), f"{title}: {columns}"
            assert all(t in NUMERIC or n == "metric" for n, t in rest), f"{title}: {columns}"
            times = [r[0] for r in rows]
            assert times == sorted(times), f"{title}: not in time order"
        elif kind == "stat":
            assert target["format"] == "table" and len(rows) == 1, f"{title}: {rows}"
            assert all(t in NUMERIC for t in types), f"{title}: {columns}"
        else:
            assert kind == "table" and target["format"] == "table", title
            assert len(set(names)) == len(names), f"{title}: duplicate column names {names}"
    models = build.build_all().values()
    assert len(panels) == sum(len(p.get("targets", [])) for m in models for p in m["panels"]) >= 25


def test_variables_list_their_values(reader: Reader, filled: World) -> None:
    for query in queries(_variables(filled)):
        if query.kind == "variable":
            columns, rows = _run(reader, query.sql)
            assert [c[0] for c in columns] == ["__value", "__text"] and rows, query.name
    _, homes = _run(reader, home.INSTITUTIONS)
    assert (filled.a.id,) in [(r[0],) for r in homes]


def test_regulator_panels_show_the_api_figures(reader: Reader, filled: World) -> None:
    """The dashboard and the API read the same function: the home table agrees with the hand-worked values."""
    text = expand(regulator.HOMES, start=START, end=END, interval_ms=3_600_000, variables={"region": "420502"})
    columns, rows = _run(reader, text)
    table = {r[0]: dict(zip([c[0] for c in columns], r, strict=True)) for r in rows}
    a = table[filled.a.code]
    assert a["unacknowledged > 5 min"] == 2 and a["beds"] == 10
    assert a["p90 to acknowledge (s)"] == pytest.approx(295)
    assert a["night rounds"] == pytest.approx(46 / 62)  # 31 nights of October over by now, two floors
    # 30 October was rebuilt from raw readings, and only BS-A0 had any (720 minutes): that day's roll-ups now hold
    # 720 online minutes instead of 9 * 1440 + 720 + 288; the 31st has none; 31 days are expected
    online = 419040 - (9 * 1440 + 720 + 288) + 720
    assert a["devices online"] == pytest.approx(online / (31 * (10 * 1440 + 2 * 288)))
    assert set(table) == {filled.a.code, filled.b.code}


def test_regulator_panels_count_false_alarms_as_the_api_does(reader: Reader, filled: World, sup_db: Database) -> None:
    """False alarms (migration 0015) through grafana.supervision_alarm_daily (0016): home A's October alarms for
    people closed with codes, two of four false (the technical one's device_issue is left out, as the API leaves it);
    home B's have no code, so its false alarms are not known (null, shown as "not known"), not zero."""
    a = filled.a
    codes = {"button": "real_event", "fall": "false_alarm", "exit": "real_event", "press": "accidental_press",
             "offline": "device_issue"}  # fmt: skip
    days = {"region": "420502"}
    with psycopg.connect(sup_db.url, autocommit=True) as conn:
        for name, code in codes.items():
            conn.execute("UPDATE alarms SET outcome_code = %s WHERE id = %s", (code, a.alarms[name]))
        try:
            columns, rows = _run(reader, expand(regulator.HOMES, start=START, end=END, interval_ms=0, variables=days))
            table = {r[0]: dict(zip([c[0] for c in columns], r, strict=True)) for r in rows}
            assert table[a.code]["false alarms"] == 2 and table[a.code]["false-alarm rate"] == pytest.approx(0.5)
            assert table[filled.b.code]["false alarms"] is None and table[filled.b.code]["false-alarm rate"] is None
            _, [(rate,)] = _run(reader, expand(regulator.FALSE_ALARM_RATE, start=START, end=END, interval_ms=0,
                                               variables=days))  # fmt: skip
            _, [(share,)] = _run(reader, expand(regulator.CODED_SHARE, start=START, end=END, interval_ms=0,
                                                variables=days))  # fmt: skip
            api = conn.execute(
                "SELECT coded, false_alarms FROM supervision_false_alarms(%s, '2026-10-01', '2026-10-31')"
                " WHERE institution_id = 0",
                ([a.id, filled.b.id],),
            ).fetchone()
            alarms = conn.execute(
                "SELECT alarms_for_people FROM supervision_figures(%s, '2026-10-01', '2026-10-31', 'Asia/Shanghai')"
                " WHERE institution_id = 0",
                ([a.id, filled.b.id],),
            ).fetchone()
            assert api == (4, 2) and rate == pytest.approx(2 / 4)
            assert alarms is not None and share == pytest.approx(4 / alarms[0])
        finally:
            conn.execute("UPDATE alarms SET outcome_code = NULL WHERE id = ANY (%s)", ([a.alarms[n] for n in codes],))
    panel = next(p for p in build.build_all()[regulator.UID]["panels"] if p["title"] == "Homes")
    shown = {o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]}
    assert {"id": "noValue", "value": "not known"} in shown["false alarms"]
    assert {"id": "noValue", "value": "not known"} in shown["false-alarm rate"]


def test_time_zone_of_the_world() -> None:
    assert local(date(2026, 10, 1), 0).astimezone(UTC) == START and TZ.key == "Asia/Shanghai"
