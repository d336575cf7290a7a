"""Health free text (the hospital of a stay, its note, the place of a death) is personal data: encrypted at rest, in
clear for the home and the family, masked for regulators, every read audited; what an older version stored in clear
is encrypted by ``eldercare db migrate``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.platform_procs import migrate_command
from tests.registry.support import (
    ADMIN_PASSWORD,
    PASSWORD,
    Database,
    Server,
    World,
    data_key,
    drop_database,
    login,
    make_admin,
    new_id_number,
    old_database,
)

from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo

PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


def _dump(admin_url: str) -> bytes:
    return subprocess.run(
        [PG_DUMP, "--data-only", "--no-owner", admin_url], capture_output=True, check=True, timeout=120
    ).stdout


def _health_reads(world: World, resident: int) -> list[dict[str, Any]]:
    with psycopg.connect(world.db.url) as conn:
        rows = conn.execute(
            "SELECT actor, detail FROM audit_log WHERE action = 'read_health' AND object_type = 'resident'"
            " AND object_id = %s ORDER BY seq",
            (resident,),
        ).fetchall()
    return [{"actor": actor, **detail} for actor, detail in rows]


def _family_of(world: World, resident: int) -> Any:
    username = f"family-ht-{os.urandom(3).hex()}"
    world.admin.ok("POST", "/api/v1/users", 201, json={"username": username, "password": PASSWORD, "role": "family"})
    client = login(world.base, username, PASSWORD)
    world.admin.ok(
        "POST",
        f"/api/v1/users/{client.user_id}/family-links",
        201,
        json={"resident_id": resident, "relation": "儿子", "consent": True},
    )
    return client


def test_hospital_and_place_are_encrypted_shown_to_the_home_and_every_read_is_audited(world: World) -> None:
    staff = world.users["staff_a"]
    who = int(
        staff.ok(
            "POST",
            f"/api/v1/institutions/{world.a.id}/residents",
            201,
            json={"name": "韩桂兰", "id_number": new_id_number("420502")},
        )["id"]
    )
    hospital, note, place = "夷陵区人民医院心内科", "急性心衰，吸氧治疗", "夷陵区小溪塔家中卧室"
    start = datetime.now(UTC) - timedelta(days=3)
    stay = staff.ok(
        "POST",
        f"/api/v1/residents/{who}/hospital-stays",
        201,
        json={"hospital": hospital, "note": note, "start": start.isoformat()},
    )
    assert (stay["hospital"], stay["note"]) == (hospital, note)  # the writer gets back what it wrote

    # At rest: neither the row nor any other row of the database holds the text.
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute("SELECT row_to_json(h)::text FROM hospital_stays h WHERE id = %s", (stay["id"],)).fetchone()
    assert row is not None and hospital not in row[0] and note not in row[0]
    assert hospital.encode().hex() not in row[0] and note.encode().hex() not in row[0]

    # The home's staff read it in clear; the read is audited as a read of health data.
    before = len(_health_reads(world, who))
    listed = staff.ok("GET", f"/api/v1/residents/{who}/hospital-stays")
    assert [(s["id"], s["hospital"], s["note"]) for s in listed] == [(stay["id"], hospital, note)]
    reads = _health_reads(world, who)
    assert len(reads) == before + 1
    assert reads[-1]["actor"] == staff.username and reads[-1]["stays"] == [stay["id"]] and reads[-1]["clear"]

    # The family of this resident reads it too (audited); a family of another resident and the staff of another home
    # do not learn that the resident exists.
    family = _family_of(world, who)
    assert family.ok("GET", f"/api/v1/residents/{who}/hospital-stays")[0]["hospital"] == hospital
    assert _health_reads(world, who)[-1]["actor"] == family.username
    for outsider in (world.users["family_a"], world.users["staff_b"], world.users["head_b"], world.users["reg_4201"]):
        reply = outsider.get(f"/api/v1/residents/{who}/hospital-stays")
        assert reply.status_code == 404, (outsider.username, reply.text)
        assert hospital not in reply.text and note not in reply.text
    assert len(_health_reads(world, who)) == before + 2

    # The region's regulator sees the stay, the hospital masked as names are, the note hidden; audited as masked.
    masked = world.users["reg_4205"].ok("GET", f"/api/v1/residents/{who}/hospital-stays")
    assert [(s["hospital"], s["note"]) for s in masked] == [("夷********科", "***")]
    assert _health_reads(world, who)[-1]["clear"] is False

    # Ending the stay answers with the stay: a read of health data as well.
    ended = staff.ok("POST", f"/api/v1/hospital-stays/{stay['id']}/end", json={})
    assert (ended["hospital"], ended["note"]) == (hospital, note) and ended["end"] is not None
    assert _health_reads(world, who)[-1]["stays"] == [stay["id"]]

    # The place of a death: encrypted, and not copied into the audit log.
    died = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    staff.ok("POST", f"/api/v1/residents/{who}/death", 204, json={"died_at": died, "source": "family", "place": place})
    with psycopg.connect(world.db.url) as conn:
        death = conn.execute("SELECT row_to_json(d)::text, place_enc FROM deaths d WHERE resident_id = %s", (who,))
        text, place_enc = death.fetchone() or ("", None)
        logged = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'death' AND object_id = %s", (who,)
        ).fetchone()
    assert place not in text and place_enc is not None
    assert world.vault.decrypt(bytes(place_enc), column="deaths.place") == place
    assert logged is not None and logged[0]["place_given"] is True and place not in str(logged[0])

    # A dump of the whole database taken without the key has none of the three texts.
    dump = _dump(world.db.admin_url)
    for secret in (hospital, note, place):
        assert secret.encode() not in dump, secret


# --- what an older version stored in clear --------------------------------------------------------------------

_STAYS = [("宜昌市中心人民医院", "股骨颈骨折术后"), ("葛洲坝集团中心医院", "")]
_PLACE = "西陵区东山大道家中"


@pytest.fixture
def old_db(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A database migrated up to the version before health text was encrypted, with such text in clear."""
    db, home = old_database(stack, monkeypatch, below=12, prefix="ec_clear")
    vault = Vault(data_key(stack))
    with psycopg.connect(db.url, autocommit=True) as conn:
        people = []
        for n in range(2):
            number = new_id_number("420502")
            person = conn.execute(
                "INSERT INTO residents (institution_id, person_code, name_enc, id_number_enc, id_number_hash,"
                " id_number_masked, birth_date, sex) VALUES (%s, %s, %s, %s, %s, %s, '1940-01-01', 'female')"
                " RETURNING id",
                (
                    home,
                    f"P000000000{n}",
                    vault.encrypt(f"旧人{n}", column="residents.name"),
                    vault.encrypt(number, column="residents.id_number"),
                    vault.lookup_hash(number),
                    number[:6] + "*" * 8 + number[-4:],
                ),
            ).fetchone()
            assert person is not None
            people.append(person[0])
        for k, (hospital, note) in enumerate(_STAYS):
            conn.execute(
                "INSERT INTO hospital_stays (resident_id, hospital, during, note)"
                " VALUES (%s, %s, tstzrange(%s, %s), %s)",
                (people[0], hospital, f"2026-0{k + 1}-01T00:00Z", f"2026-0{k + 1}-05T00:00Z", note),
            )
        conn.execute(
            "INSERT INTO deaths (resident_id, died_at, place, source) VALUES (%s, '2026-05-01T00:00Z', %s, 'family'),"
            " (%s, '2026-05-02T00:00Z', '', 'family')",
            (people[0], _PLACE, people[1]),
        )
    yield db
    drop_database(stack, db)


def test_migrate_encrypts_the_text_an_older_version_stored_in_clear(stack: StackInfo, old_db: Database) -> None:
    key = data_key(stack)
    # Without the key the command refuses, saying what it needs, and prints no value of the settings.
    refused = migrate_command(old_db.url, None)
    assert refused.returncode != 0
    assert "ELDERCARE_DATA_KEY" in refused.stderr and "postgresql://" not in refused.stderr
    done = migrate_command(old_db.url, key)
    assert done.returncode == 0, done.stderr

    vault = Vault(key)
    with psycopg.connect(old_db.url) as conn:
        stays = conn.execute(
            "SELECT hospital, note, hospital_enc, note_enc FROM hospital_stays ORDER BY lower(during)"
        ).fetchall()
        deaths = conn.execute("SELECT place, place_enc FROM deaths ORDER BY died_at").fetchall()
    assert [(h, n) for h, n, _, _ in stays] == [("", "")] * len(_STAYS)  # nothing left in clear
    hospitals = [vault.decrypt(bytes(h), column="hospital_stays.hospital") for _, _, h, _ in stays]
    notes = [None if n is None else vault.decrypt(bytes(n), column="hospital_stays.note") for *_, n in stays]
    assert hospitals == [h for h, _ in _STAYS]
    assert notes == [n or None for _, n in _STAYS]  # an empty note stays empty (NULL): nothing to hide
    assert deaths[0][0] == "" and vault.decrypt(bytes(deaths[0][1]), column="deaths.place") == _PLACE
    assert deaths[1] == ("", None)
    dump = _dump(old_db.admin_url)
    for secret in (*(h for h, _ in _STAYS), _STAYS[0][1], _PLACE):
        assert secret.encode() not in dump, secret

    # Nothing is in clear any more: the next migrate needs no key.
    again = migrate_command(old_db.url, None)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr

    # The API reads the converted rows back.
    make_admin(old_db, "admin-clear")
    with Server(database_url=old_db.url, key=key, state_dir=stack.state_dir) as server:
        admin = login(server.base, "admin-clear", ADMIN_PASSWORD)
        with psycopg.connect(old_db.url) as conn:
            resident = conn.execute("SELECT resident_id FROM hospital_stays LIMIT 1").fetchone()
        assert resident is not None
        listed = admin.ok("GET", f"/api/v1/residents/{resident[0]}/hospital-stays")
    assert [(s["hospital"], s["note"]) for s in listed] == _STAYS


def _new_resident(world: World, name: str) -> int:
    body = {"name": name, "id_number": new_id_number("420502")}
    return int(world.users["staff_a"].ok("POST", f"/api/v1/institutions/{world.a.id}/residents", 201, json=body)["id"])


def _new_bed(world: World, label: str) -> int:
    body = {"room_id": world.a.room, "label": label, "kind": "nursing"}
    return int(world.users["staff_a"].ok("POST", f"/api/v1/institutions/{world.a.id}/beds", 201, json=body)["id"])


def _audit_details(world: World, action: str, object_type: str, object_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(world.db.url) as conn:
        rows = conn.execute(
            "SELECT detail FROM audit_log WHERE action = %s AND object_type = %s AND object_id = %s ORDER BY seq",
            (action, object_type, object_id),
        ).fetchall()
    return [row[0] for row in rows]


def test_a_discharge_note_is_kept_encrypted_on_the_stay_shown_to_readers_of_the_stays_and_not_logged(
    world: World,
) -> None:
    """The note given at a discharge is health data: stored encrypted on the bed stay it ended (not in the audit
    log, which records only that one was given), shown with the resident's stays in clear to the home and the
    family, as *** to the region's regulator, each such read audited as a read of health data."""
    staff = world.users["staff_a"]
    who = _new_resident(world, "邓翠兰")
    first, second = _new_bed(world, "dn1"), _new_bed(world, "dn2")
    began = datetime.now(UTC) - timedelta(days=6)
    staff.ok("POST", f"/api/v1/residents/{who}/admit", 204, json={"bed_id": first, "at": began.isoformat()})
    moved = began + timedelta(days=2)
    staff.ok("POST", f"/api/v1/residents/{who}/transfer", 204, json={"bed_id": second, "at": moved.isoformat()})
    note = "转上级医院康复科，家属陪同；血压偏高，继续服用氨氯地平"
    left = (moved + timedelta(days=2)).isoformat()
    staff.ok("POST", f"/api/v1/residents/{who}/discharge", 204, json={"at": left, "note": note})

    # At rest: encrypted on the stay that ended, bound to its column; the audit log says only that a note was given.
    with psycopg.connect(world.db.url) as conn:
        rows = conn.execute(
            "SELECT end_reason, end_note_enc, row_to_json(a)::text FROM bed_assignments a WHERE resident_id = %s"
            " ORDER BY lower(during)",
            (who,),
        ).fetchall()
    assert [(reason, enc is None) for reason, enc, _ in rows] == [("transfer", True), ("discharge", False)]
    assert world.vault.decrypt(bytes(rows[1][1]), column="bed_assignments.end_note") == note
    assert all(note not in text and note.encode().hex() not in text for *_, text in rows)
    (logged,) = _audit_details(world, "discharge", "resident", who)
    assert logged["note_given"] is True and "note" not in logged and note not in str(logged)

    # The home reads it with the stays, audited as a read of health data.
    before = len(_health_reads(world, who))
    stays = staff.ok("GET", f"/api/v1/residents/{who}/beds")
    assert [(s["bed_id"], s["end_reason"], s["note"]) for s in stays] == [
        (first, "transfer", ""),
        (second, "discharge", note),
    ]
    reads = _health_reads(world, who)
    assert len(reads) == before + 1
    assert reads[-1]["actor"] == staff.username and reads[-1]["fields"] == ["discharge_note"] and reads[-1]["clear"]

    # The family reads it too; the region's regulator sees that there is one; outsiders learn nothing.
    family = _family_of(world, who)
    assert family.ok("GET", f"/api/v1/residents/{who}/beds")[-1]["note"] == note
    assert _health_reads(world, who)[-1]["actor"] == family.username
    regulator = world.users["reg_4205"]
    assert [s["note"] for s in regulator.ok("GET", f"/api/v1/residents/{who}/beds")] == ["", "***"]
    assert _health_reads(world, who)[-1]["clear"] is False
    for outsider in (world.users["family_a"], world.users["staff_b"], world.users["reg_4201"]):
        reply = outsider.get(f"/api/v1/residents/{who}/beds")
        assert reply.status_code == 404 and note not in reply.text
    assert len(_health_reads(world, who)) == before + 3
    # the bed's history (by person code, for the home and regulators) is no way around it
    assert note not in staff.get(f"/api/v1/beds/{second}/history").text

    # A dump of the whole database taken without the key does not hold it.
    assert note.encode() not in _dump(world.db.admin_url)


def test_the_note_given_when_a_hospital_stay_ends_is_added_to_the_stays_note_encrypted(world: World) -> None:
    """Ending a hospital stay with a note appends it to the stay's note (on a new line; the note written at the
    start is kept), encrypted; the audit log says only that a note was given. Ending without a note keeps it."""
    staff = world.users["staff_a"]
    who = _new_resident(world, "彭玉珍")
    start = datetime.now(UTC) - timedelta(days=20)
    first = staff.ok(
        "POST",
        f"/api/v1/residents/{who}/hospital-stays",
        201,
        json={"hospital": "三峡大学附属仁和医院", "note": "肺部感染", "start": start.isoformat()},
    )
    back = "好转出院，口服抗生素七天"
    ended = staff.ok(
        "POST",
        f"/api/v1/hospital-stays/{first['id']}/end",
        json={"at": (start + timedelta(days=5)).isoformat(), "note": back},
    )
    assert ended["note"] == f"肺部感染\n{back}"
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute(
            "SELECT note_enc, row_to_json(h)::text FROM hospital_stays h WHERE id = %s", (first["id"],)
        ).fetchone()
    assert row is not None and back not in row[1]
    assert world.vault.decrypt(bytes(row[0]), column="hospital_stays.note") == f"肺部感染\n{back}"
    logged = _audit_details(world, "update", "hospital_stay", first["id"])[-1]
    assert logged["note_given"] is True and back not in str(logged)
    # a stay begun without a note gets the one given at its end; an end without a note changes no note
    second = staff.ok(
        "POST",
        f"/api/v1/residents/{who}/hospital-stays",
        201,
        json={"hospital": "宜昌市中心人民医院", "start": (start + timedelta(days=8)).isoformat()},
    )
    second_end = (start + timedelta(days=10)).isoformat()
    staff.ok("POST", f"/api/v1/hospital-stays/{second['id']}/end", json={"at": second_end, "note": "复查正常"})
    third = staff.ok(
        "POST",
        f"/api/v1/residents/{who}/hospital-stays",
        201,
        json={"hospital": "葛洲坝集团中心医院", "note": "跌倒", "start": (start + timedelta(days=15)).isoformat()},
    )
    staff.ok("POST", f"/api/v1/hospital-stays/{third['id']}/end", json={})
    listed = staff.ok("GET", f"/api/v1/residents/{who}/hospital-stays")
    assert [s["note"] for s in listed] == [f"肺部感染\n{back}", "复查正常", "跌倒"]
    assert _audit_details(world, "update", "hospital_stay", third["id"])[-1]["note_given"] is False
