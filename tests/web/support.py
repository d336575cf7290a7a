"""The web tests' world: the real platform (``eldercare ingest`` and ``eldercare serve`` as processes) on the
test stack, homes seeded in a region of their own, users of every role, and a simulated gateway that keeps
publishing bed samples, battery levels and heartbeats over MQTT (TLS) as a real one would.

Beds of the board home, in order (two rooms of four):
  0 in bed (family A's elder, with six hours of history)   4 resident in hospital
  1 in bed (family B's elder)                              5 empty (the stay ended)
  2 out of bed for 25 minutes and counting                 6, 7 in bed
  3 bed sensor silent for two hours, reported offline by the gateway
(the sensors of beds 4 and 5 keep reporting nobody in bed)
"""

from __future__ import annotations

import asyncio
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from eldercare.devices import messages as m
from eldercare.devices import topics
from eldercare.platform.alarms import text as alarm_text
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import create_user
from eldercare.platform.crypto import Vault
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo
from eldercare.simulators.seed import SeededDevice, SeededHome, seed_home
from eldercare.simulators.uplink import SimUplink, now_ms

REGION = "420525"  # 远安县: no other test seeds homes here, so the regulator sees exactly these
PASSWORD = "web-password-1"
FEED_PERIOD_S = 15.0


@dataclass(frozen=True, slots=True)
class Bed:
    index: int
    bed_code: str
    label: str
    resident_id: int
    person_code: str
    name: str
    sensor: str
    button: str


@dataclass
class Users:
    nurse: str
    nurse2: str
    family_a: str
    family_b: str
    regulator: str


@dataclass
class World:
    base: str
    db: str
    home: SeededHome
    beds: list[Bed]
    other_homes: list[SeededHome]
    users: Users
    gateway: Gateway
    past_alarm_id: int

    def token(self, username: str) -> str:
        reply = httpx.post(f"{self.base}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["token"]
        return token

    def api(self, username: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(username)}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)


@dataclass
class Gateway:
    """The home's simulated gateway. One MQTT session (one client id) shared by the feeder thread and the
    tests, so sends go through a lock: a frame's sequence number is taken and published in one step."""

    uplink: SimUplink
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, messages: list[m.DeviceMessage], *, alarm: bool) -> None:
        with self.lock:
            info = self.uplink.send(messages, alarm=alarm)
        info.wait_for_publish(10)

    def heartbeat(self) -> None:
        beat = m.Heartbeat(ts=now_ms(), queue=m.QueueDepth(alarm=0, telemetry=0))
        status = topics.uplink(self.uplink.institution, self.uplink.gateway, topics.Channel.STATUS)
        with self.lock:
            # SimUplink publishes birth and death itself; a heartbeat goes on the same status topic.
            info = self.uplink._client.publish(status, m.encode(beat), qos=1)
        info.wait_for_publish(10)


def _sample(dev: str, at: datetime, *, present: bool, rng: random.Random) -> m.BedSample:
    ts = int(at.timestamp() * 1000)
    if not present:
        return m.BedSample(dev=dev, ts=ts, presence=False, move=0.0)
    minute = at.timestamp() / 60
    hr = 68 + 6 * ((minute % 90) / 90) + rng.uniform(-2, 2)
    rr = 16 + 2 * ((minute % 45) / 45) + rng.uniform(-0.6, 0.6)
    return m.BedSample(dev=dev, ts=ts, presence=True, hr=round(hr, 1), rr=round(rr, 1), move=round(rng.random() / 5, 2))


class Feeder:
    """What a gateway in service does all the time: bed samples of the sensors in service, battery levels of
    the buttons, heartbeats; until stopped."""

    def __init__(self, gateway: Gateway, beds: list[Bed], out_since: datetime) -> None:
        self.gateway = gateway
        self.beds = beds
        self.out_since = out_since
        self.stop = threading.Event()
        self.rng = random.Random(3)
        self.thread = threading.Thread(target=self._run, name="web-feeder", daemon=True)

    def once(self) -> None:
        now = datetime.now(UTC)
        samples: list[m.DeviceMessage] = []
        for bed in self.beds:
            if bed.index == 3:  # the silent sensor
                continue
            samples.append(_sample(bed.sensor, now, present=bed.index not in (2, 4, 5), rng=self.rng))
        batteries: list[m.DeviceMessage] = [
            m.Battery(dev=b.button, ts=int(now.timestamp() * 1000), level=87) for b in self.beds
        ]
        self.gateway.send(samples, alarm=False)
        self.gateway.send(batteries, alarm=False)
        self.gateway.heartbeat()

    def _run(self) -> None:
        while not self.stop.wait(FEED_PERIOD_S):
            self.once()

    def start(self) -> None:
        self.once()
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def history(gateway: Gateway, beds: list[Bed], *, now: datetime, out_since: datetime) -> None:
    """Six hours of bed samples (one every two minutes) as the gateway would have sent them."""
    rng = random.Random(5)
    batch: list[m.DeviceMessage] = []
    for step in range(180, 0, -1):
        at = now - timedelta(minutes=2 * step)
        for bed in beds:
            if bed.index == 3 and at > now - timedelta(hours=2):
                continue  # the sensor that went silent
            away = bed.index in (4, 5) or (bed.index == 2 and at >= out_since)
            batch.append(_sample(bed.sensor, at, present=not away, rng=rng))
        if len(batch) >= 400:
            gateway.send(batch, alarm=False)
            batch = []
    if batch:
        gateway.send(batch, alarm=False)


async def _seed(stack: StackInfo, db: str, vault: Vault) -> tuple[SeededHome, list[SeededHome], Users]:
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        broker = LocalBroker(stack.state_dir)
        rng = random.Random(secrets.randbits(32))
        home = await seed_home(
            conn, vault=vault, broker=broker, rng=rng, region6=REGION, rooms=2, beds_per_room=4, staff_password=PASSWORD
        )
        others = [
            await seed_home(
                conn,
                vault=vault,
                broker=broker,
                rng=rng,
                region6=REGION,
                rooms=1,
                beds_per_room=2,
                staff_password=PASSWORD,
            )
            for _ in range(2)
        ]
        tag = secrets.token_hex(3)
        users = Users(
            nurse=home.staff_username,
            nurse2=f"nurse2-{tag}",
            family_a=f"family-a-{tag}",
            family_b=f"family-b-{tag}",
            regulator=f"regulator-{tag}",
        )
        await create_user(
            conn, username=users.nurse2, password=PASSWORD, role=Role.STAFF, institution_id=home.institution_id
        )
        await create_user(conn, username=users.family_a, password=PASSWORD, role=Role.FAMILY)
        await create_user(conn, username=users.family_b, password=PASSWORD, role=Role.FAMILY)
        await create_user(conn, username=users.regulator, password=PASSWORD, role=Role.REGULATOR, region_code=REGION)
    return home, others, users


def _beds(db: str, home: SeededHome, vault: Vault) -> list[Bed]:
    sensors = {d.bed_code: d for d in home.devices if d.kind == "bed_sensor"}
    buttons = {d.bed_code: d for d in home.devices if d.kind == "button"}
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT b.code, b.label, r.id, r.person_code, r.name_enc FROM beds b"
            " JOIN bed_assignments a ON a.bed_id = b.id AND a.during @> now() JOIN residents r ON r.id = a.resident_id"
            " WHERE b.institution_id = %s ORDER BY b.label",
            (home.institution_id,),
        ).fetchall()
    beds = []
    for index, (code, label, rid, person, name_enc) in enumerate(rows):
        sensor: SeededDevice = sensors[code]
        beds.append(
            Bed(
                index,
                code,
                label,
                rid,
                person,
                vault.decrypt(bytes(name_enc), column="residents.name"),
                sensor.code,
                buttons[code].code,
            )
        )
    return beds


def _shape(db: str, home: SeededHome, others: list[SeededHome], beds: list[Bed], users: Users, vault: Vault) -> int:
    """Links, a hospital stay, an ended stay, and past alarms for the family story and the regulator's figures.
    The id of a past alarm of family A's elder."""
    now = datetime.now(UTC)
    with psycopg.connect(db, autocommit=True) as conn:
        for username, bed in ((users.family_a, beds[0]), (users.family_b, beds[1])):
            conn.execute(
                "INSERT INTO family_links (user_id, resident_id, relation) SELECT id, %s, '女儿' FROM users"
                " WHERE username = %s",
                (bed.resident_id, username),
            )
        conn.execute(
            "INSERT INTO hospital_stays (resident_id, during) VALUES (%s, tstzrange(%s, NULL))",
            (beds[4].resident_id, now - timedelta(days=2)),
        )
        conn.execute(
            "UPDATE bed_assignments SET during = tstzrange(lower(during), %s), end_reason = 'discharge'"
            " WHERE resident_id = %s AND during @> now()",
            (now - timedelta(days=1), beds[5].resident_id),
        )
        conn.execute("UPDATE residents SET status = 'discharged' WHERE id = %s", (beds[5].resident_id,))
        row = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, state, bed_id, resident_id, occurred_at, raised_at,"
            " acknowledged_at, attending_at, closed_at, outcome_enc, outcome_code, last_event_at)"
            " SELECT %(i)s, 'button', 'emergency', 'resolved', b.id, %(r)s, %(t)s, %(t)s, %(t)s + interval '40 s',"
            " %(t)s + interval '3 min', %(t)s + interval '9 min', %(o)s, 'accidental_press', %(t)s FROM beds b"
            " WHERE b.code = %(b)s RETURNING id",
            {
                "o": vault.encrypt_text("accidental_press", column=alarm_text.OUTCOME),
                "i": home.institution_id,
                "r": beds[0].resident_id,
                "t": now - timedelta(days=2, hours=3),
                "b": beds[0].bed_code,
            },
        ).fetchone()
        assert row is not None
        # Past alarms of the other homes: one answers fast, one slowly (the regulator's table tells them apart). The
        # fast one's were closed with outcome codes, one of five a false alarm; the slow one's before there were
        # codes (migration 0015), so its false alarms are not known.
        for home_x, ack_s in ((others[0], 25), (others[1], 420)):
            for day in range(1, 6):
                at = now - timedelta(days=day, hours=2)
                code = None if home_x is others[1] else "false_alarm" if day == 1 else "real_event"
                conn.execute(
                    "INSERT INTO alarms (institution_id, kind, priority, state, occurred_at, raised_at,"
                    " acknowledged_at, attending_at, closed_at, outcome_enc, outcome_code, last_event_at) VALUES (%s,"
                    " 'button', 'emergency', 'resolved', %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        home_x.institution_id,
                        at,
                        at,
                        at + timedelta(seconds=ack_s),
                        at + timedelta(seconds=ack_s + 120),
                        at + timedelta(minutes=20),
                        vault.encrypt_text(code or "real_event", column=alarm_text.OUTCOME),
                        code,
                        at,
                    ),
                )
    return int(row[0])


def build(stack: StackInfo, db: str, vault: Vault, base: str) -> World:
    """The world in database ``db`` (the platform's processes run on it), reached at ``base``."""
    home, others, users = asyncio.run(_seed(stack, db, vault))
    beds = _beds(db, home, vault)
    assert len(beds) == 8, beds
    past = _shape(db, home, others, beds, users, vault)
    uplink = SimUplink(
        institution=home.institution_code,
        gateway=home.gateway.gateway_id,
        password=home.gateway.password,
        host=stack.mqtt_host,
        port=stack.ports.mqtt_tls,
        ca_file=stack.ca_file,
    )
    uplink.connect()
    gateway = Gateway(uplink)
    return World(base, db, home, beds, others, users, gateway, past)


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
