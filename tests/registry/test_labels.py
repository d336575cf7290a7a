"""QR labels: the PDF sheets are rendered to images and every QR is decoded back to its code."""

from __future__ import annotations

import psycopg
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import zxingcpp
from tests.registry.support import World

from eldercare.devices import codes


def _decode(pdf: bytes) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    found: list[str] = []
    for page in document:
        image = page.render(scale=3).to_pil()
        found += [
            result.text for result in zxingcpp.read_barcodes(image) if result.format == zxingcpp.BarcodeFormat.QRCode
        ]
    return found


def test_bed_labels_of_a_floor_decode_to_the_bed_codes(world: World) -> None:
    staff = world.users["staff_a"]
    for n in range(16):  # more than one page (14 a page)
        staff.ok(
            "POST",
            f"/api/v1/institutions/{world.a.id}/beds",
            201,
            json={"room_id": world.a.room, "label": f"L{n:02d}", "kind": "nursing"},
        )
    reply = staff.get(f"/api/v1/floors/{world.a.floor}/bed-labels.pdf")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/pdf"
    expected = {
        b["code"]
        for b in staff.ok("GET", f"/api/v1/institutions/{world.a.id}/beds", params={"limit": 500})
        if b["room_id"] == world.a.room
    }
    decoded = _decode(reply.content)
    assert sorted(decoded) == sorted(expected)
    assert all(codes.validate_bed_code(code) == code for code in decoded)
    assert world.users["reg_4205"].get(f"/api/v1/floors/{world.a.floor}/bed-labels.pdf").status_code == 403


def test_resident_cards_decode_to_person_codes_and_printing_is_audited(world: World) -> None:
    head = world.users["head_a"]
    ids = [r["id"] for r in world.a.residents]
    reply = head.get(f"/api/v1/institutions/{world.a.id}/resident-cards.pdf", params={"resident_id": ids})
    assert reply.status_code == 200
    decoded = _decode(reply.content)
    assert sorted(decoded) == sorted(r["person_code"] for r in world.a.residents)
    assert all(codes.validate_person_code(code) == code for code in decoded)
    with psycopg.connect(world.db.url) as conn:
        row = conn.execute(
            "SELECT actor, detail FROM audit_log WHERE detail->>'purpose' = 'resident cards' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert row is not None and row[0] == head.username and sorted(row[1]["ids"]) == sorted(ids)
    other = head.get(
        f"/api/v1/institutions/{world.a.id}/resident-cards.pdf", params={"resident_id": [world.b.residents[0]["id"]]}
    )
    assert other.status_code == 200 and _decode(other.content) == []  # another home's resident is not printed
