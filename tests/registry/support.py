"""Shared by the registry and access tests: a database of their own in the test stack's cluster, the real
platform app served by uvicorn in a thread, and a small world of homes, users and residents made through
the API itself."""

from __future__ import annotations

import asyncio
import io
import random
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import uvicorn
from openpyxl import Workbook
from psycopg import sql
from tests.conftest import free_ports

from eldercare.devices import codes
from eldercare.platform.api.app import create_app
from eldercare.platform.auth.scope import Role
from eldercare.platform.auth.service import hash_password
from eldercare.platform.config import SecuritySettings
from eldercare.platform.crypto import Vault
from eldercare.platform.db import migrate as mig
from eldercare.platform.db.migrate import migrate
from eldercare.platform.registry.broker import LocalBroker
from eldercare.platform.stack.model import StackInfo

ADMIN_PASSWORD = "admin-password-1"
PASSWORD = "user-password-12"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass(frozen=True, slots=True)
class Database:
    url: str  # the application role
    admin_url: str  # superuser, same database
    name: str


def create_database(stack: StackInfo, prefix: str) -> Database:
    """A fresh, migrated database owned by the application role (isolated from other tests' data)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(_with_database(stack.admin_database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER eldercare").format(sql.Identifier(name)))
    admin_url = _with_database(stack.admin_database_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    url = _with_database(stack.database_url, name)
    migrate(url)
    return Database(url=url, admin_url=admin_url, name=name)


def old_database(stack: StackInfo, monkeypatch: pytest.MonkeyPatch, *, below: int, prefix: str) -> tuple[Database, int]:
    """A fresh database migrated only up to the version before ``below`` (what an older platform left), with one
    home in it: the database and the home's id."""
    everything = mig.available()
    monkeypatch.setattr(mig, "available", lambda: [m for m in everything if m.version < below])
    db = create_database(stack, prefix)
    monkeypatch.undo()
    with psycopg.connect(db.url, autocommit=True) as conn:
        home = conn.execute(
            "INSERT INTO institutions (code, name, kind, region_code) VALUES"
            " ('91350100M000100Y43', '旧院', 'residential_home', '420502') RETURNING id"
        ).fetchone()
    assert home is not None
    return db, int(home[0])


def drop_database(stack: StackInfo, db: Database) -> None:
    with psycopg.connect(_with_database(stack.admin_database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name)))


def data_key(stack: StackInfo) -> bytes:
    return SecuritySettings(_env_file=stack.state_dir / "eldercare.env").key_bytes()


class Server:
    """The platform's FastAPI app under uvicorn in a thread of the test process (its own event loop)."""

    def __init__(self, *, database_url: str, key: bytes, state_dir: Path) -> None:
        self.app = create_app(database_url=database_url, data_key=key, run_background=False)
        self.app.state.broker = LocalBroker(state_dir)
        self.port = free_ports(1)[0]
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), name="api", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the API did not start within 30 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class Client:
    """A logged-in user of the API (sync httpx)."""

    base: str
    username: str
    token: str = ""
    user_id: int = 0
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        return self.http.request(method, self.base + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        reply = self.request(method, path, **kwargs)
        assert reply.status_code == status, f"{method} {path}: {reply.status_code} {reply.text}"
        return (
            reply.json()
            if reply.content and reply.headers.get("content-type", "").startswith("application/json")
            else reply
        )


def login(base: str, username: str, password: str) -> Client:
    reply = httpx.post(f"{base}/api/v1/auth/login", json={"username": username, "password": password}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return Client(base=base, username=username, token=body["token"], user_id=body["user"]["user_id"])


def make_admin(db: Database, username: str) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, 'admin')",
            (username, hash_password(ADMIN_PASSWORD)),
        )


_rng = random.Random(20261122)


def new_uscc(region6: str) -> str:
    return codes.generate_uscc(_rng, region6=region6)


_issued: set[str] = set()


def new_id_number(region6: str = "420502", *, born: date | None = None, sex: str = "female") -> str:
    """An ID number not issued before in this run: a region, birth day and sex leave 500 sequence numbers, and drawn
    at random they met by the birthday paradox (two residents of one home with the same number: a 409)."""
    birth = born or date(1940, 1, 1)
    while True:
        number = codes.generate_id_number(_rng, region6=region6, birth_date=birth, sex=sex)  # type: ignore[arg-type]
        if number not in _issued:
            _issued.add(number)
            return number


@dataclass
class Home:
    id: int
    code: str
    building: int
    floor: int
    room: int
    beds: list[dict[str, Any]]
    residents: list[dict[str, Any]]
    device: dict[str, Any]
    gateway: dict[str, Any]


@dataclass
class World:
    base: str
    db: Database
    vault: Vault
    admin: Client
    a: Home  # 420502, 宜昌 西陵
    b: Home  # 420503, 宜昌 伍家岗
    c: Home  # 420102, 武汉 江岸
    provider_id: int  # home-care provider in 420502
    users: dict[str, Client]
    names: dict[int, str]  # resident id -> clear name
    id_numbers: dict[int, str]  # resident id -> clear ID number


def _home(admin: Client, region: str, tag: str, names: dict[int, str], ids: dict[int, str]) -> Home:
    ascii_tag = {"甲": "A", "乙": "B", "丙": "C"}[tag]
    inst = admin.ok(
        "POST",
        "/api/v1/institutions",
        201,
        json={
            "code": new_uscc(region),
            "name": f"{tag}养老院",
            "kind": "residential_home",
            "region_code": region,
            "address": "湖北省",
            "lon": 111.3,
            "lat": 30.7,
            "star_grade": 3,
            "capacity": 20,
            "price_min": 2000,
            "price_max": 4000,
            "services": ["medical_care"],
            "contact_name": "张院长",
            "contact_phone": "13800138000",
        },
    )
    iid = inst["id"]
    building = admin.ok("POST", f"/api/v1/institutions/{iid}/buildings", 201, json={"name": "1号楼"})["id"]
    floor = admin.ok("POST", f"/api/v1/buildings/{building}/floors", 201, json={"name": "1层", "level": 1})["id"]
    room = admin.ok("POST", f"/api/v1/floors/{floor}/rooms", 201, json={"name": "101"})["id"]
    beds = [
        admin.ok("POST", f"/api/v1/institutions/{iid}/beds", 201, json={"room_id": room, "label": f"{n}", "kind": k})
        for n, k in ((1, "nursing"), (2, "ordinary"), (3, "nursing"))
    ]
    residents = []
    for n in range(2):
        name = f"{tag}王秀{'英兰'[n]}"
        number = new_id_number(region, born=date(1938 + n * 10, 3, 4))
        resident = admin.ok(
            "POST",
            f"/api/v1/institutions/{iid}/residents",
            201,
            json={"name": name, "id_number": number, "fall_risk": "high"},
        )
        names[resident["id"]] = name
        ids[resident["id"]] = number
        admin.ok("POST", f"/api/v1/residents/{resident['id']}/admit", 204, json={"bed_id": beds[n]["id"]})
        residents.append(resident)
    device = admin.ok(
        "POST", f"/api/v1/institutions/{iid}/devices", 201, json={"code": f"BS-{ascii_tag}-1", "kind": "bed_sensor"}
    )
    admin.ok("POST", f"/api/v1/devices/{device['id']}/bind", 201, json={"bed_id": beds[0]["id"]})
    gateway = admin.ok(
        "POST",
        f"/api/v1/institutions/{iid}/gateways",
        201,
        json={"gateway_id": f"GW-{ascii_tag}-{secrets.token_hex(3)}", "name": "网关"},
    )
    return Home(iid, inst["code"], building, floor, room, beds, residents, device, gateway)


def build_world(base: str, db: Database, vault: Vault) -> World:
    admin_name = f"admin-{secrets.token_hex(3)}"
    make_admin(db, admin_name)
    admin = login(base, admin_name, ADMIN_PASSWORD)
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    a = _home(admin, "420502", "甲", names, ids)
    b = _home(admin, "420503", "乙", names, ids)
    c = _home(admin, "420102", "丙", names, ids)
    provider = admin.ok(
        "POST",
        "/api/v1/institutions",
        201,
        json={
            "code": new_uscc("420502"),
            "name": "西陵居家服务中心",
            "kind": "home_care_provider",
            "region_code": "420502",
            "contact_phone": "0717-6221234",
        },
    )
    users: dict[str, Client] = {}
    specs: list[tuple[str, Role, dict[str, Any]]] = [
        ("head_a", Role.HEAD, {"institution_id": a.id}),
        ("staff_a", Role.STAFF, {"institution_id": a.id}),
        ("head_b", Role.HEAD, {"institution_id": b.id}),
        ("staff_b", Role.STAFF, {"institution_id": b.id}),
        ("staff_p", Role.STAFF, {"institution_id": provider["id"]}),
        ("family_a", Role.FAMILY, {}),
        ("reg_4205", Role.REGULATOR, {"region_code": "4205"}),
        ("reg_4201", Role.REGULATOR, {"region_code": "4201"}),
    ]
    suffix = secrets.token_hex(3)
    for key, role, extra in specs:
        username = f"{key.replace('_', '-')}-{suffix}"
        admin.ok(
            "POST", "/api/v1/users", 201, json={"username": username, "password": PASSWORD, "role": role.value, **extra}
        )
        users[key] = login(base, username, PASSWORD)
    admin.ok(
        "POST",
        f"/api/v1/users/{users['family_a'].user_id}/family-links",
        201,
        json={"resident_id": a.residents[0]["id"], "relation": "女儿", "consent": True},
    )
    return World(base, db, vault, admin, a, b, c, provider["id"], users, names, ids)


@pytest.fixture(scope="session")
def world_db(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "ec_reg")
    yield db
    drop_database(stack, db)


@pytest.fixture(scope="session")
def api(stack: StackInfo, world_db: Database) -> Iterator[Server]:
    with Server(database_url=world_db.url, key=data_key(stack), state_dir=stack.state_dir) as server:
        yield server


@pytest.fixture(scope="session")
def world(stack: StackInfo, api: Server, world_db: Database) -> World:
    return build_world(api.base, world_db, Vault(data_key(stack)))


def xlsx(rows: list[list[object]]) -> bytes:
    """A workbook of one sheet with ``rows``, as a spreadsheet program would save it."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
