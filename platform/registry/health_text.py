"""Health free text: the hospital of a stay, its note, the place of a death. Personal data like the ID number:
encrypted at rest with the :class:`~eldercare.platform.crypto.Vault` (each value bound to its column), in clear for
the home and the family, masked for regulators, every read audited (``stays.py``).

Before migration 0012 these were stored in clear. The data key lives only in the application, so the migration
cannot encrypt them itself: it adds the encrypted columns, and :func:`seal`, run by ``eldercare db migrate`` right
after the SQL migrations (``platform/db/migrate.py``), encrypts what is still in clear and empties the old columns.
It runs on every migrate and finds nothing once done; a row that a writer which does not know the new columns
inserts in clear is sealed by the next migrate.
"""

from __future__ import annotations

from typing import Any

import psycopg

from eldercare.platform.crypto import Vault

Conn = psycopg.Connection[tuple[Any, ...]]  # migrate's connection (sync)

SINCE = 12  # the migration that added the encrypted columns

HOSPITAL = "hospital_stays.hospital"
NOTE = "hospital_stays.note"
PLACE = "deaths.place"

_IN_CLEAR = """
SELECT (SELECT count(*) FROM hospital_stays WHERE hospital <> '' OR note <> '')
     + (SELECT count(*) FROM deaths WHERE place <> '')
"""


def seal_text(vault: Vault, text: str, *, column: str) -> bytes | None:
    """The ciphertext of ``text`` for ``column``; None for an empty text (nothing to hide)."""
    return vault.encrypt(text, column=column) if text else None


def open_text(vault: Vault, blob: bytes | None, *, column: str) -> str:
    return "" if blob is None else vault.decrypt(bytes(blob), column=column)


def mask_note(text: str) -> str:
    """Regulators see that there is a note, not what it says (nor how long it is)."""
    return "***" if text else ""


def in_clear(conn: Conn) -> int:
    """How many rows hold health text in clear (0 before migration :data:`SINCE`: nothing to seal into yet)."""
    applied = conn.execute("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = %s)", (SINCE,)).fetchone()
    if applied is None or not applied[0]:
        return 0
    row = conn.execute(_IN_CLEAR).fetchone()
    return 0 if row is None else int(row[0])


def seal(conn: Conn, vault: Vault) -> int:
    """Encrypt the health text still in clear and empty the old columns, inside the caller's transaction; the
    number of rows sealed. A text already encrypted is kept unless the clear column holds one."""
    stays = conn.execute(
        "SELECT id, hospital, note, hospital_enc, note_enc FROM hospital_stays"
        " WHERE hospital <> '' OR note <> '' ORDER BY id FOR UPDATE"
    ).fetchall()
    deaths = conn.execute(
        "SELECT resident_id, place FROM deaths WHERE place <> '' ORDER BY resident_id FOR UPDATE"
    ).fetchall()
    conn.execute(
        "CREATE TEMP TABLE sealed_stays (id bigint PRIMARY KEY, hospital_enc bytea, note_enc bytea) ON COMMIT DROP"
    )
    conn.execute("CREATE TEMP TABLE sealed_deaths (resident_id bigint PRIMARY KEY, place_enc bytea) ON COMMIT DROP")
    with conn.cursor() as cur:
        with cur.copy("COPY sealed_stays (id, hospital_enc, note_enc) FROM STDIN") as copy:
            for stay_id, hospital, note, hospital_enc, note_enc in stays:
                copy.write_row(
                    (
                        stay_id,
                        seal_text(vault, hospital, column=HOSPITAL) or hospital_enc,
                        seal_text(vault, note, column=NOTE) or note_enc,
                    )
                )
        with cur.copy("COPY sealed_deaths (resident_id, place_enc) FROM STDIN") as copy:
            for resident_id, place in deaths:
                copy.write_row((resident_id, seal_text(vault, place, column=PLACE)))
    conn.execute(
        "UPDATE hospital_stays h SET hospital_enc = s.hospital_enc, note_enc = s.note_enc, hospital = '', note = ''"
        " FROM sealed_stays s WHERE h.id = s.id"
    )
    conn.execute(
        "UPDATE deaths d SET place_enc = s.place_enc, place = '' FROM sealed_deaths s"
        " WHERE d.resident_id = s.resident_id"
    )
    return len(stays) + len(deaths)


def compact(conn: Conn) -> None:
    """After :func:`seal` (outside a transaction): rewrite the two tables so the old row versions, which still hold
    the text, leave the table files, and refresh the planner's statistics, which sample column values. (Copies in
    the write-ahead log and in backups taken before are beyond the reach of the database.)"""
    conn.execute("VACUUM (FULL, ANALYZE) hospital_stays, deaths")
