"""Uploads that must be refused precisely: an empty claim (it would silently withdraw the month's claim in
force), register dates that are not exactly YYYY-MM-DD, and bodies over the API's size limit (413 before
anything is spooled, even without a token)."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from tests.registry.support import Client, Database, new_id_number, xlsx
from tests.subsidy.support import home, user

from eldercare.devices import codes
from eldercare.platform.api.limits import MAX_BODY

_rng = random.Random(31)
PERSON = codes.new_person_code(_rng)
CLAIM = {"month": "2026-10", "lines": [{"person_code": PERSON, "programme": "old_age_allowance", "amount": "100"}]}


@pytest.fixture(scope="module")
def head(api: str, sub_db: Database) -> tuple[Client, int]:
    home_id = home(sub_db.url)
    return user(api, sub_db.url, "head", institution_id=home_id), home_id


@pytest.fixture(scope="module")
def regulator(api: str, sub_db: Database) -> Client:
    return user(api, sub_db.url, "regulator", region="4205")


def _fields(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 422, reply.text
    return {e["field"]: e["reason"] for e in reply.json()["errors"]}


def _claims_in_force(db: Database, home_id: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(db.url) as conn:
        return conn.execute(
            "SELECT c.id, count(l.*) FROM subsidy_claims c LEFT JOIN subsidy_claim_lines l ON l.claim_id = c.id"
            " WHERE c.institution_id = %s AND c.replaced_at IS NULL GROUP BY c.id",
            (home_id,),
        ).fetchall()


def test_an_empty_claim_is_refused_and_the_claim_in_force_kept(sub_db: Database, head: tuple[Client, int]) -> None:
    client, home_id = head
    path = f"/api/v1/institutions/{home_id}/subsidy/claims"
    stored = client.ok("POST", path, 201, json=CLAIM)
    in_force = _claims_in_force(sub_db, home_id)
    assert in_force == [(stored["claim_id"], 1)]
    assert _fields(client.post(path, json={"month": "2026-10", "lines": []})) == {
        "claim.lines": "the claim has no lines"
    }
    header_only = b"person_code,bed_code,programme,days,amount,month\n"
    reply = client.post(path + "/upload", files={"file": ("c.csv", header_only)}, params={"month": "2026-10"})
    assert _fields(reply) == {"rows[0].file": "the claim has no lines: the file has a header but no data rows"}
    assert _claims_in_force(sub_db, home_id) == in_force


def test_register_dates_are_exactly_yyyy_mm_dd(regulator: Client) -> None:
    one, two, three = (new_id_number("420502") for _ in range(3))
    deaths = f"id_number,died_on\n{one},2020-01-01xyz!!\n{two},20200101\n{three},1850-01-01\n".encode()
    reply = regulator.post("/api/v1/subsidy/death-register", files={"file": ("d.csv", deaths)})
    assert _fields(reply) == {
        "rows[2].died_on": "a date as YYYY-MM-DD",
        "rows[3].died_on": "a date as YYYY-MM-DD",
        "rows[4].died_on": "a date between 1900-01-01 and 2100-12-31",
    }
    hardship = f"id_number,category,valid_from,valid_to\n{one},dibao,2024-01-01,20991231\n".encode()
    reply = regulator.post("/api/v1/subsidy/hardship-register", files={"file": ("h.csv", hardship)})
    assert _fields(reply) == {"rows[2].valid_to": "a date as YYYY-MM-DD"}
    # a real date cell of a workbook is a date, and 2099-12-31 written out is the usual "no end"
    book = xlsx(
        [["id_number", "category", "valid_from", "valid_to"], [one, "低保", datetime(2024, 1, 1), "2099-12-31"]]
    )
    report = regulator.ok("POST", "/api/v1/subsidy/hardship-register", 201, files={"file": ("h.xlsx", book)})
    assert report["rows"] == 1 and report["added"] == 1


def _raw_request(base: str, head: bytes, body: Iterator[bytes]) -> tuple[int, dict[str, Any]]:
    """Send ``head`` and as much of ``body`` as the server takes; its status and JSON answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for piece in body:
                sock.sendall(piece)
        except OSError:
            pass  # the server answered and closed: read what it said
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def test_a_body_over_the_limit_is_refused_before_the_login_check(api: str) -> None:
    host = urlsplit(api).netloc.encode()
    preamble = b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\nContent-Type: text/csv\r\n\r\n'
    # declared: 300 MB announced, a few bytes sent; answered at once, nothing read or spooled
    head = (
        b"POST /api/v1/subsidy/claims/upload HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 314572800\r\n\r\n"
    )
    status, body = _raw_request(api, head, iter([preamble]))
    assert status == 413 and "larger than" in body["detail"], body
    # chunked: no length announced; refused once the bytes received pass the limit
    head = (
        b"POST /api/v1/subsidy/claims/upload HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    megabyte = b"A" * (1 << 20)

    def chunks() -> Iterator[bytes]:
        yield b"%x\r\n%s\r\n" % (len(preamble), preamble)
        for _ in range(MAX_BODY // len(megabyte) + 1):
            yield b"%x\r\n%s\r\n" % (len(megabyte), megabyte)
        yield b"0\r\n\r\n"

    status, body = _raw_request(api, head, chunks())
    assert status == 413 and "larger than" in body["detail"], body
    # a body under the limit still reaches the route (which wants a login)
    assert httpx.post(api + "/api/v1/subsidy/claims/upload", files={"file": ("x.csv", b"a,b\n")}).status_code == 401
