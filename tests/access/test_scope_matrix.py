"""The scope matrix, from the outside: for every endpoint of the app's own OpenAPI document, a user outside
the scope of the object it names gets 403 or 404 and none of its data; nobody gets anything without a
session. A new endpoint without a row here fails the test, so none can escape the matrix."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.registry.support import PASSWORD, Client, World, login, new_id_number, new_uscc

# Endpoints that name no scoped object: public by design, or about the caller's own session.
NOT_SCOPED = {
    ("GET", "/healthz"): "liveness",
    ("POST", "/api/v1/auth/login"): "public: how a session starts",
    ("GET", "/api/v1/auth/me"): "the caller's own identity",
    ("POST", "/api/v1/auth/logout"): "ends the caller's own session",
    ("GET", "/api/v1/public/services"): "public catalogue, no personal data",
    ("POST", "/api/v1/public/service-applications"): "public; tested in tests/registry/test_service_apply.py",
    ("GET", "/api/v1/public/service-applications/{tracking_code}"): "public by tracking code, masked data only",
    ("GET", "/api/v1/alarms/stream"): "server-sent events that never end; scope tested by the alarms tests",
    ("GET", "/api/v1/me/notifications/prefs"): "the caller's own settings",
    ("PUT", "/api/v1/me/notifications/prefs"): "the caller's own settings",
    ("GET", "/api/v1/me/notifications/channels"): "the caller's own channels",
    ("POST", "/api/v1/me/notifications/channels"): "the caller's own channels",
    ("GET", "/api/v1/me/notifications/kinds"): "the platform's channel kinds, the same for every user",
    # the facility map is public by design and carries no personal data (tests/map checks that)
    ("GET", "/api/v1/map/homes"): "public map",
    ("GET", "/api/v1/map/nearest"): "public map",
    ("GET", "/api/v1/map/homes/{code}"): "public map: a home's public detail",
    ("GET", "/api/v1/map/districts"): "public map: district labels",
    ("GET", "/api/v1/map/export.{fmt}"): "public map: export of public fields",
    ("GET", "/api/v1/map/photos/{photo_id}"): "public map: a home's photo",
    ("GET", "/api/v1/map/config"): "public map: tile source and start view",
    ("GET", "/api/v1/public/inspections"): "public by design (双随机一公开): draws and results, no personal data",
    ("GET", "/public/inspections"): "the public inspections as a page",
}


# A 1x1 PNG: the photo endpoints check the bytes against the declared type.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass
class Target:
    """Objects of home A (and the provider P) that the outsiders try to reach."""

    params: dict[str, Any]
    secrets_: list[str]  # strings that must not appear in any answer to an outsider


@pytest.fixture(scope="module")
def target(world: World) -> Target:
    admin, a = world.admin, world.a
    resident = a.residents[0]["id"]
    contact = admin.ok(
        "POST",
        f"/api/v1/residents/{resident}/contacts",
        201,
        json={"kind": "emergency", "name": "李建国", "phone": "13912345678", "relation": "儿子", "consent": True},
    )
    stay = admin.ok(
        "POST",
        f"/api/v1/residents/{resident}/hospital-stays",
        201,
        json={"hospital": "宜昌市中心人民医院", "start": (datetime.now(UTC) - timedelta(days=3)).isoformat()},
    )
    answer = admin.http.post(
        f"{world.base}/api/v1/public/service-applications",
        json={"name": world.names[resident], "id_number": world.id_numbers[resident], "service": "home_care_visit"},
    )
    assert answer.status_code == 200, answer.text
    with psycopg.connect(world.db.url, autocommit=True) as conn:
        application = conn.execute(
            "SELECT id FROM service_applications WHERE tracking_code = %s",
            (answer.json()["application"]["tracking_code"],),
        ).fetchone()
        alarm = conn.execute(
            "INSERT INTO alarms (institution_id, kind, priority, device_id, bed_id, resident_id, occurred_at,"
            " last_event_at) VALUES (%s, 'button', 'emergency', %s, %s, %s, now(), now()) RETURNING id",
            (a.id, a.device["id"], a.beds[0]["id"], resident),
        ).fetchone()
    assert application is not None and alarm is not None
    family_a = world.users["family_a"]
    channel = family_a.ok(
        "POST", "/api/v1/me/notifications/channels", 201, json={"kind": "sms", "address": "13800001111"}
    )
    shift = world.users["head_a"].ok(
        "POST",
        "/api/v1/rosters",
        201,
        json={
            "institution_code": a.code,
            "username": world.users["staff_a"].username,
            "tier": 1,
            "starts": "08:00:00",
            "ends": "20:00:00",
        },
    )
    with psycopg.connect(world.db.url) as conn:
        homes_4205 = conn.execute(
            "SELECT count(*) FROM institutions WHERE starts_with(region_code, '4205') AND kind = 'residential_home'"
        ).fetchone()
    assert homes_4205 is not None
    score = admin.ok(
        "POST",
        "/api/v1/supervision/credit-scores",
        201,
        json={"from": "2026-10-01", "to": "2026-10-31", "institution_id": a.id},
    )[0]
    draw = admin.ok(
        "POST",
        "/api/v1/supervision/inspections/draws",
        201,
        json={"region": "4205", "homes": homes_4205[0], "inspectors": 1, "team_size": 1, "seed": "scope-matrix"},
    )
    inspection = next(i for i in draw["inspections"] if i["institution_code"] == a.code)
    photo = admin.ok(
        "POST", f"/api/v1/map/homes/{a.code}/photos", 201, content=PNG, headers={"Content-Type": "image/png"}
    )
    params = {
        "score_id": score["id"],
        "inspection_id": inspection["id"],
        "institution_id": a.id,
        "building_id": a.building,
        "floor_id": a.floor,
        "bed_id": a.beds[0]["id"],
        "resident_id": resident,
        "contact_id": contact["id"],
        "stay_id": stay["id"],
        "device_id": a.device["id"],
        "gateway_pk": a.gateway["gateway"]["id"],
        "user_id": world.users["staff_a"].user_id,
        "application_id": application[0],
        "alarm_id": alarm[0],
        "kind": "residents",
        "channel_id": channel["id"],
        "rule": "button",
        "shift_id": shift["id"],
        "code": a.code,
        "photo_id": photo["id"],
    }
    # the family-link endpoints name a family user and a resident
    params["family_user_id"] = family_a.user_id
    leaks = [
        a.code,
        *(b["code"] for b in a.beds),
        *(r["person_code"] for r in a.residents),
        *(world.names[r["id"]] for r in a.residents),
        a.device["code"],
        a.gateway["gateway"]["gateway_id"],
        "李建国",
        "13912345678",
        world.users["staff_a"].username,
    ]
    return Target(params, leaks)


def _bodies(world: World) -> dict[tuple[str, str], dict[str, Any]]:
    a = world.a
    now = datetime.now(UTC).isoformat()
    csv = f"name,id_number\n外人,{new_id_number()}\n".encode()
    return {
        ("GET", "/api/v1/institutions"): {},
        ("POST", "/api/v1/institutions"): {
            "json": {"code": new_uscc("420502"), "name": "新院", "kind": "residential_home", "region_code": "420502"}
        },
        ("GET", "/api/v1/institutions/{institution_id}"): {},
        ("PATCH", "/api/v1/institutions/{institution_id}"): {"json": {"name": "被改名"}},
        ("GET", "/api/v1/institutions/{institution_id}/buildings"): {},
        ("POST", "/api/v1/institutions/{institution_id}/buildings"): {"json": {"name": "外楼"}},
        ("GET", "/api/v1/buildings/{building_id}/floors"): {},
        ("POST", "/api/v1/buildings/{building_id}/floors"): {"json": {"name": "外层"}},
        ("GET", "/api/v1/floors/{floor_id}/rooms"): {},
        ("POST", "/api/v1/floors/{floor_id}/rooms"): {"json": {"name": "外间"}},
        ("GET", "/api/v1/institutions/{institution_id}/beds"): {},
        ("POST", "/api/v1/institutions/{institution_id}/beds"): {"json": {"label": "x1", "kind": "nursing"}},
        ("GET", "/api/v1/beds/{bed_id}"): {},
        ("PATCH", "/api/v1/beds/{bed_id}"): {"json": {"label": "moved"}},
        ("GET", "/api/v1/beds/{bed_id}/history"): {},
        ("GET", "/api/v1/institutions/{institution_id}/residents"): {},
        ("POST", "/api/v1/institutions/{institution_id}/residents"): {
            "json": {"name": "外人", "id_number": new_id_number()}
        },
        ("GET", "/api/v1/residents/{resident_id}"): {},
        ("PATCH", "/api/v1/residents/{resident_id}"): {"json": {"fall_risk": "low"}},
        ("POST", "/api/v1/residents/{resident_id}/id-number"): {"json": {"reason": "curiosity"}},
        ("GET", "/api/v1/residents/{resident_id}/contacts"): {},
        ("POST", "/api/v1/residents/{resident_id}/contacts"): {
            "json": {"kind": "family", "name": "外人", "phone": "13700000000", "relation": "友", "consent": True}
        },
        ("DELETE", "/api/v1/contacts/{contact_id}"): {},
        ("POST", "/api/v1/residents/{resident_id}/admit"): {"json": {"bed_id": a.beds[2]["id"]}},
        ("POST", "/api/v1/residents/{resident_id}/transfer"): {"json": {"bed_id": a.beds[2]["id"]}},
        ("POST", "/api/v1/residents/{resident_id}/discharge"): {"json": {}},
        ("GET", "/api/v1/residents/{resident_id}/beds"): {},
        # visits to elders living alone (platform/visits/): a named resident outside the scope is not found; the due
        # list is the caller's homes' only (refused to regulators and families); the coverage is filtered to homes
        ("POST", "/api/v1/residents/{resident_id}/visits"): {
            "json": {"visited_at": now, "mode": "in_person", "outcome": "well", "note": "外人"}
        },
        ("GET", "/api/v1/residents/{resident_id}/visits"): {},
        ("GET", "/api/v1/visits/due"): {},
        # (asked for home A alone, as a home's drill-down asks: outsiders are refused, not given an empty list)
        ("GET", "/api/v1/supervision/visits"): {
            "params": {"from": "2026-10-01", "to": "2026-10-31", "institution_id": a.id},
            "scoped": True,
        },
        ("GET", "/api/v1/residents/{resident_id}/hospital-stays"): {},
        ("POST", "/api/v1/residents/{resident_id}/hospital-stays"): {"json": {"hospital": "某医院", "start": now}},
        ("POST", "/api/v1/hospital-stays/{stay_id}/end"): {"json": {}},
        ("POST", "/api/v1/residents/{resident_id}/death"): {"json": {"died_at": now, "source": "family"}},
        ("GET", "/api/v1/institutions/{institution_id}/devices"): {},
        ("POST", "/api/v1/institutions/{institution_id}/devices"): {"json": {"code": "X-1", "kind": "button"}},
        ("GET", "/api/v1/devices/{device_id}"): {},
        ("PATCH", "/api/v1/devices/{device_id}"): {"json": {"vendor": "x"}},
        ("POST", "/api/v1/devices/{device_id}/bind"): {"json": {"bed_id": a.beds[1]["id"]}},
        ("POST", "/api/v1/devices/{device_id}/unbind"): {"json": {}},
        ("GET", "/api/v1/devices/{device_id}/bindings"): {},
        ("GET", "/api/v1/institutions/{institution_id}/gateways"): {},
        ("POST", "/api/v1/institutions/{institution_id}/gateways"): {"json": {"gateway_id": "GW-outsider"}},
        ("GET", "/api/v1/gateways/{gateway_pk}"): {},
        ("POST", "/api/v1/gateways/{gateway_pk}/credentials"): {},
        ("POST", "/api/v1/gateways/{gateway_pk}/revoke"): {},
        ("POST", "/api/v1/institutions/{institution_id}/imports/{kind}"): {"files": {"file": ("r.csv", csv)}},
        ("GET", "/api/v1/floors/{floor_id}/bed-labels.pdf"): {},
        ("GET", "/api/v1/institutions/{institution_id}/resident-cards.pdf"): {},
        ("GET", "/api/v1/users"): {},
        ("POST", "/api/v1/users"): {
            "json": {
                "username": f"intruder-{secrets.token_hex(3)}",
                "password": PASSWORD,
                "role": "staff",
                "institution_id": a.id,
            }
        },
        ("GET", "/api/v1/users/{user_id}"): {},
        ("PATCH", "/api/v1/users/{user_id}"): {"json": {"active": False}},
        ("GET", "/api/v1/users/{user_id}/family-links"): {"user_id": "family_user_id"},
        ("POST", "/api/v1/users/{user_id}/family-links"): {
            "user_id": "family_user_id",
            "json": {"resident_id": a.residents[1]["id"], "relation": "子", "consent": True},
        },
        ("DELETE", "/api/v1/users/{user_id}/family-links/{resident_id}"): {"user_id": "family_user_id"},
        ("GET", "/api/v1/audit"): {},
        ("GET", "/api/v1/audit/verify"): {},
        ("GET", "/api/v1/service-applications"): {},
        ("POST", "/api/v1/service-applications/{application_id}/status"): {"json": {"status": "accepted"}},
        ("GET", "/api/v1/alarms"): {},
        ("GET", "/api/v1/alarms/report"): {
            "params": {
                "since": (datetime.now(UTC) - timedelta(days=7)).isoformat(),
                "until": datetime.now(UTC).isoformat(),
            }
        },
        ("DELETE", "/api/v1/me/notifications/channels/{channel_id}"): {},
        # the notifications about a home's alarms that reached nobody: filtered to the caller's homes
        ("GET", "/api/v1/me/notifications/undelivered"): {},
        # the alarm rules and rosters name the home by its code in the query or body
        ("GET", "/api/v1/alarm-rules"): {"params": {"institution": a.code}, "scoped": True},
        ("PUT", "/api/v1/alarm-rules/{rule}"): {"json": {"institution_code": a.code, "params": {"priority": "urgent"}}},
        ("DELETE", "/api/v1/alarm-rules/{rule}"): {"params": {"institution": a.code}},
        ("GET", "/api/v1/rosters"): {"params": {"institution": a.code}, "scoped": True},
        ("POST", "/api/v1/rosters"): {
            "json": {
                "institution_code": a.code,
                "username": world.users["staff_a"].username,
                "tier": 2,
                "starts": "20:00:00",
                "ends": "08:00:00",
            }
        },
        ("DELETE", "/api/v1/rosters/{shift_id}"): {},
        # supervision: lists are filtered to the caller's homes; a named home, floor, score or inspection is not found
        ("GET", "/api/v1/supervision/figures"): {"params": {"from": "2026-10-01", "to": "2026-10-31"}},
        ("GET", "/api/v1/supervision/attention"): {"params": {"from": "2026-10-01", "to": "2026-10-31"}},
        ("POST", "/api/v1/supervision/rounds"): {"json": {"floor_id": a.floor}},
        ("GET", "/api/v1/supervision/rounds"): {},
        ("POST", "/api/v1/supervision/credit-scores"): {
            "json": {"from": "2026-10-01", "to": "2026-10-31", "institution_id": a.id}
        },
        ("GET", "/api/v1/supervision/credit-scores"): {},
        ("GET", "/api/v1/supervision/credit-scores/{score_id}"): {},
        ("GET", "/api/v1/supervision/flags"): {},
        ("POST", "/api/v1/supervision/inspections/draws"): {
            "json": {"region": "420502", "homes": 1, "inspectors": 1, "team_size": 1}
        },
        ("POST", "/api/v1/supervision/inspections/{inspection_id}/result"): {
            "json": {"outcome": "fail", "summary": "外人", "inspected_at": now}
        },
        ("GET", "/api/v1/supervision/institutions/{institution_id}/risk-inspection"): {},
        ("GET", "/api/v1/supervision/institutions/{institution_id}/risk-inspection.pdf"): {},
        ("GET", "/api/v1/supervision/institutions/{institution_id}/risk-inspection.html"): {},
        ("GET", "/api/v1/alarms/{alarm_id}"): {},
        ("GET", "/api/v1/alarms/{alarm_id}/history"): {},
        ("POST", "/api/v1/alarms/{alarm_id}/acknowledge"): {"json": {"note": ""}},
        ("POST", "/api/v1/alarms/{alarm_id}/attend"): {"json": {"note": ""}},
        ("POST", "/api/v1/alarms/{alarm_id}/resolve"): {"json": {"outcome": "false alarm"}},
        ("POST", "/api/v1/alarms/{alarm_id}/cancel"): {"json": {"outcome": "false alarm"}},
        ("POST", "/api/v1/map/homes/{code}/photos"): {"content": PNG, "headers": {"Content-Type": "image/png"}},
        ("DELETE", "/api/v1/map/homes/{code}/photos/{photo_id}"): {},
        # the pages' reads (platform/web/api.py)
        ("GET", "/api/v1/institutions/{institution_id}/board"): {},
        ("GET", "/api/v1/residents/{resident_id}/status"): {},
        ("GET", "/api/v1/residents/{resident_id}/vitals"): {},
        ("GET", "/api/v1/residents/{resident_id}/alarms"): {},
        ("GET", "/api/v1/me/residents"): {},  # a family user's own residents: filtered, never another's
        # subsidy (platform/subsidy/router.py): lists are filtered to the caller's homes; a named home, region,
        # resident or claim line outside the scope is not found; supervisors' actions are refused to homes
        ("GET", "/api/v1/subsidy/programmes"): {},
        ("POST", "/api/v1/subsidy/schedules"): {
            "json": {
                "programme": "old_age_allowance",
                "region_code": "4205",
                "effective_from": "2031-01",
                "rates": [{"min_age": 80, "monthly_yuan": "100"}],
            }
        },
        ("POST", "/api/v1/institutions/{institution_id}/subsidy/claims"): {"json": {"month": "2026-01", "lines": []}},
        ("POST", "/api/v1/institutions/{institution_id}/subsidy/claims/upload"): {
            "files": {"file": ("claim.csv", b"person_code,bed_code,programme,days,amount,month\n")},
            "params": {"month": "2026-01"},
        },
        ("POST", "/api/v1/subsidy/claims/upload"): {
            "files": {
                "file": ("claims.csv", f"institution_code,person_code,programme,amount\n{a.code},,x,1\n".encode())
            },
            "params": {"month": "2026-01"},
        },
        ("GET", "/api/v1/institutions/{institution_id}/subsidy/claims"): {"params": {"month": "2026-01"}},
        ("GET", "/api/v1/institutions/{institution_id}/subsidy/export"): {"params": {"month": "2026-01"}},
        ("POST", "/api/v1/subsidy/runs"): {"params": {"month": "2026-01", "region": "4205"}},
        ("GET", "/api/v1/subsidy/totals"): {"params": {"month": "2026-01"}},
        ("GET", "/api/v1/subsidy/export"): {"params": {"month": "2026-01"}},
        ("GET", "/api/v1/subsidy/liveness"): {"params": {"month": "2026-01", "everyone": "true"}},
        ("GET", "/api/v1/subsidy/newly-eligible"): {"params": {"month": "2026-01"}},
        ("GET", "/api/v1/subsidy/anomalies"): {"params": {"month": "2026-01"}},
        ("POST", "/api/v1/subsidy/enrolments"): {
            "json": {"resident_id": a.residents[0]["id"], "programme": "old_age_allowance", "from_month": "2026-01"}
        },
        ("POST", "/api/v1/subsidy/decisions"): {
            "json": {"line_id": 1, "outcome": "rejected", "payable_yuan": "0", "note": "checked on site"}
        },
        ("POST", "/api/v1/subsidy/death-register"): {
            "files": {"file": ("deaths.csv", f"id_number,died_on\n{new_id_number()},2026-01-05\n".encode())},
            "params": {"region": "4205"},
        },
        ("POST", "/api/v1/subsidy/hardship-register"): {
            "files": {
                "file": (
                    "hardship.csv",
                    f"id_number,category,valid_from\n{new_id_number()},dibao,2026-01-01\n".encode(),
                )
            },
            "params": {"region": "4205"},
        },
    }


def _operations(world: World, api_app: Any) -> list[tuple[str, str]]:
    schema = api_app.openapi()
    return [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops]


def _request(client: Client, method: str, path: str, spec: dict[str, Any], target: Target) -> Any:
    params = dict(target.params)
    if "user_id" in spec:
        params["user_id"] = params[spec["user_id"]]
    url = re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), path)
    kwargs = {k: v for k, v in spec.items() if k in ("json", "files", "params", "content", "headers")}
    return client.request(method, url, **kwargs)


@pytest.fixture(scope="module")
def outsiders(world: World) -> dict[str, Client]:
    """Users of another home, another region, and a family of another resident."""
    family_b = f"family-b-{secrets.token_hex(3)}"
    world.admin.ok("POST", "/api/v1/users", 201, json={"username": family_b, "password": PASSWORD, "role": "family"})
    client = login(world.base, family_b, PASSWORD)
    world.admin.ok(
        "POST",
        f"/api/v1/users/{client.user_id}/family-links",
        201,
        json={"resident_id": world.b.residents[0]["id"], "relation": "女儿", "consent": True},
    )
    return {
        "head_b": world.users["head_b"],
        "staff_b": world.users["staff_b"],
        "reg_4201": world.users["reg_4201"],
        "family_b": client,
    }


def test_every_endpoint_is_in_the_matrix(world: World, api: Any) -> None:
    bodies = _bodies(world)
    operations = _operations(world, api.app)
    missing = [op for op in operations if op not in bodies and op not in NOT_SCOPED]
    assert not missing, f"endpoints without a row in the scope matrix: {missing}"
    stale = [op for op in [*bodies, *NOT_SCOPED] if op not in operations]
    assert not stale, f"rows for endpoints that no longer exist: {stale}"


def test_outsiders_get_403_or_404_and_no_data(
    world: World, api: Any, target: Target, outsiders: dict[str, Client]
) -> None:
    bodies = _bodies(world)
    failures: list[str] = []
    for method, path in _operations(world, api.app):
        if (method, path) in NOT_SCOPED:
            continue
        spec = bodies[(method, path)]
        for who, client in outsiders.items():
            reply = _request(client, method, path, spec, target)
            names_object = "{" in path or spec.get("scoped", False)
            if names_object or method != "GET":
                if reply.status_code not in (403, 404):
                    failures.append(f"{who} {method} {path}: {reply.status_code} {reply.text[:200]}")
                    continue
                body = reply.json()
                if set(body) != {"detail", "errors"}:
                    failures.append(f"{who} {method} {path}: not the error shape: {body}")
            elif reply.status_code not in (200, 403):  # a list: filtered to the caller's scope, or refused
                failures.append(f"{who} {method} {path}: {reply.status_code}")
            leaked = [s for s in target.secrets_ if s in reply.text]
            if leaked:
                failures.append(f"{who} {method} {path}: leaked {leaked}")
    assert not failures, "\n".join(failures)


def test_without_a_session_every_scoped_endpoint_answers_401(world: World, api: Any, target: Target) -> None:
    bodies = _bodies(world)
    anonymous = Client(base=world.base, username="nobody")
    failures = []
    for method, path in _operations(world, api.app):
        if (method, path) in NOT_SCOPED:
            continue
        reply = _request(anonymous, method, path, bodies[(method, path)], target)
        if reply.status_code != 401 or any(s in reply.text for s in target.secrets_):
            failures.append(f"{method} {path}: {reply.status_code}")
    assert not failures, "\n".join(failures)


def test_the_matrix_requests_are_valid_for_insiders(world: World, api: Any, target: Target) -> None:
    """The control: the same reads succeed for the home's head, so the outsiders' 403/404 come from scope,
    not from a malformed request."""
    bodies = _bodies(world)
    head = world.users["head_a"]
    for method, path in _operations(world, api.app):
        if method != "GET" or (method, path) in NOT_SCOPED or path.startswith(("/api/v1/audit",)):
            continue
        client = world.users["staff_p"] if path.startswith("/api/v1/service-applications") else head
        reply = _request(client, method, path, bodies[(method, path)], target)
        assert reply.status_code == 200, f"{method} {path}: {reply.status_code} {reply.text[:300]}"


def _family_user(world: World, *residents: int) -> Client:
    username = f"family-{secrets.token_hex(4)}"
    world.admin.ok("POST", "/api/v1/users", 201, json={"username": username, "password": PASSWORD, "role": "family"})
    client = login(world.base, username, PASSWORD)
    for resident in residents:
        world.admin.ok(
            "POST",
            f"/api/v1/users/{client.user_id}/family-links",
            201,
            json={"resident_id": resident, "relation": "子", "consent": True},
        )
    return client


@pytest.mark.parametrize("head", ["head_a", "head_b"])
def test_a_family_user_shared_by_two_homes_is_managed_by_admins_only(world: World, head: str) -> None:
    """A family user linked to a resident of home A and one of home B: neither head may change its password,
    deactivate it or rename it (else a head could log in as it and read the other home's resident), and each
    head's listing of its links shows only the head's own home's link."""
    a_resident, b_resident = world.a.residents[1], world.b.residents[1]
    shared = _family_user(world, a_resident["id"], b_resident["id"])
    own, other = (a_resident, b_resident) if head == "head_a" else (b_resident, a_resident)
    client = world.users[head]
    for change in ({"password": "taken-over-pw-1"}, {"active": False}, {"display_name": "改名"}):
        reply = client.patch(f"/api/v1/users/{shared.user_id}", json=change)
        assert reply.status_code == 403, f"{head} {change}: {reply.status_code} {reply.text}"
    links = client.ok("GET", f"/api/v1/users/{shared.user_id}/family-links")
    assert [link["resident_id"] for link in links] == [own["id"]]
    assert other["person_code"] not in str(links)
    # the account still works with its own password and still sees the other home's resident
    assert login(world.base, shared.username, PASSWORD).get(f"/api/v1/residents/{other['id']}").status_code == 200
    # an admin manages it
    world.admin.ok("PATCH", f"/api/v1/users/{shared.user_id}", json={"display_name": "共同家属"})


def test_a_head_manages_a_family_user_whose_links_are_all_in_the_home(world: World) -> None:
    """The control: a family user linked only to home A's residents is home A's head's to manage, and
    becomes the admins' once linked to a home-B resident too."""
    family = _family_user(world, world.a.residents[0]["id"], world.a.residents[1]["id"])
    head_a = world.users["head_a"]
    head_a.ok("PATCH", f"/api/v1/users/{family.user_id}", json={"password": "new-password-12"})
    login(world.base, family.username, "new-password-12")
    world.admin.ok(
        "POST",
        f"/api/v1/users/{family.user_id}/family-links",
        201,
        json={"resident_id": world.b.residents[0]["id"], "relation": "子", "consent": True},
    )
    assert head_a.patch(f"/api/v1/users/{family.user_id}", json={"active": False}).status_code == 403
    assert login(world.base, family.username, "new-password-12").token


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/api/v1/alarm-rules", {}),
        ("GET", "/api/v1/rosters", {}),
        ("PUT", "/api/v1/alarm-rules/wander", {"json": {"enabled": False}}),
        ("DELETE", "/api/v1/alarm-rules/wander", {}),
    ],
)
def test_a_family_user_of_the_home_gets_no_rules_or_rosters(
    world: World, target: Target, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """The rules name other residents by person code (their overrides) and the rosters name the staff and their
    shifts: a family user of a resident of the home itself gets 403 and none of it; staff, the head and the
    region's regulator read them."""
    a = world.a
    other = a.residents[1]  # not linked to family_a
    world.users["head_a"].ok(
        "PUT",
        "/api/v1/alarm-rules/wander",
        json={"institution_code": a.code, "person_code": other["person_code"], "params": {"radius_m": 50}},
    )
    spec = dict(kwargs)
    if method == "PUT":
        spec["json"] = {**spec["json"], "institution_code": a.code}
    else:
        spec["params"] = {"institution": a.code}
    reply = world.users["family_a"].request(method, path, **spec)
    assert reply.status_code == 403, reply.text
    assert set(reply.json()) == {"detail", "errors"}
    assert other["person_code"] not in reply.text and world.users["staff_a"].username not in reply.text
    if method == "GET":
        for reader in ("staff_a", "head_a", "reg_4205"):
            world.users[reader].ok("GET", path, params={"institution": a.code})
