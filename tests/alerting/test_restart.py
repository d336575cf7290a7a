"""Never lost: an alarm accepted by ingest while the platform is down is raised and delivered when it
comes back, once per recipient, and a second restart sends nothing again."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import psycopg
from tests.alerting.conftest import with_conn
from tests.alerting.receivers import start_smtp
from tests.platform_procs import run_eldercare, stack_env, wait_http

from eldercare.devices import messages as m
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import AsyncConn, create_user
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import SeededHome, seed_home
from eldercare.simulators.uplink import SimUplink, now_ms


def _seed(stack: StackInfo, db: str, vault: Vault) -> tuple[SeededHome, str]:
    async def go(conn: AsyncConn) -> tuple[SeededHome, str]:
        home = await seed_home(
            conn,
            vault=vault,
            broker=LocalBroker(stack.state_dir),
            rng=random.Random(99),
            staff_password="staff-password-1",
        )
        user = await create_user(
            conn, username=f"fam-{home.institution_code[-6:].lower()}", password="password-123", role=Role.FAMILY
        )
        button = next(d for d in home.devices if d.kind == "button")
        await conn.execute(
            "INSERT INTO family_links (user_id, resident_id) SELECT %s, id FROM residents WHERE person_code = %s",
            (user, button.person_code),
        )
        await conn.execute(
            "INSERT INTO notification_channels (user_id, kind, address_enc) VALUES (%s, 'email', %s)",
            (user, vault.encrypt("family@example.cn", column="notification_channels.address")),
        )
        return home, button.code

    return asyncio.run(with_conn(db, go))


def test_an_alarm_raised_while_the_platform_is_down_is_delivered_once(
    stack: StackInfo, db: str, vault: Vault, free_port: Callable[[], int]
) -> None:
    home, button = _seed(stack, db, vault)
    smtp_port, api_port = free_port(), free_port()
    controller, box = start_smtp(smtp_port)
    env = stack_env(
        stack, ELDERCARE_SMTP_HOST="127.0.0.1", ELDERCARE_SMTP_PORT=str(smtp_port), ELDERCARE_TICKER_PERIOD_S="1"
    )
    try:
        with run_eldercare("ingest", ["ingest", "--name", "restart"], env) as ingest:
            ingest.wait_for("subscribed, storing", timeout=30)
            link = SimUplink(
                institution=home.institution_code,
                gateway=home.gateway.gateway_id,
                password=home.gateway.password,
                host=stack.mqtt_host,
                port=stack.ports.mqtt_tls,
                ca_file=stack.ca_file,
            )
            link.connect()
            link.send([m.Button(dev=button, ts=now_ms(), action=m.ButtonAction.PRESS)], alarm=True).wait_for_publish(5)
            link.close()
            deadline = time.monotonic() + 10
            with psycopg.connect(db) as conn:
                while conn.execute(
                    "SELECT count(*) FROM alarm_inbox WHERE institution_id = %s", (home.institution_id,)
                ).fetchone() != (1,):
                    assert time.monotonic() < deadline, "ingest did not hand the event over"
                    time.sleep(0.05)
                    conn.commit()
            assert box.messages == []  # nobody has raised it yet: the platform is down

            for attempt in range(2):  # start the platform, then restart it: one e-mail in all
                with run_eldercare("serve", ["serve", "--port", str(api_port)], env) as serve:
                    wait_http(f"http://127.0.0.1:{api_port}/healthz", timeout=30)
                    serve.wait_for("alarm engine: listening", timeout=30)
                    mails = box.wait(1, 10) if attempt == 0 else box.wait(2, 3)
        assert len(mails) == 1
        assert "紧急呼叫" in str(mails[0]["Subject"])
        with psycopg.connect(db) as conn:
            rows = conn.execute(
                "SELECT n.event, n.state FROM notifications n JOIN alarms a ON a.id = n.alarm_id"
                " WHERE a.institution_id = %s",
                (home.institution_id,),
            ).fetchall()
        assert rows == [("raised", "sent")]
    finally:
        controller.stop()
