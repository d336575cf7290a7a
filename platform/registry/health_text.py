"""Health free text: the hospital of a stay, its note, the place of a death. Personal data like the ID number:
encrypted at rest with the :class:`~eldercare.platform.crypto.Vault` (each value bound to its column), in clear for
the home and the family, masked for regulators, every read audited (``stays.py``).

Before migration 0012 these were stored in clear. The data key lives only in the application, so the migration
cannot encrypt them itself: it adds the encrypted columns, and the seal step of ``eldercare db migrate``, right after
the SQL migrations (``platform/db/migrate.py``), encrypts what is still in clear (the columns of :data:`SEALING`) and
empties the old columns. It runs on every migrate and finds nothing once done; a row that a writer which does not
know the new columns inserts in clear is sealed by the next migrate.
"""

from __future__ import annotations

from eldercare.platform.db.migrate import ClearColumn, ClearTable, Sealing

HOSPITAL = "hospital_stays.hospital"
NOTE = "hospital_stays.note"
PLACE = "deaths.place"
END_NOTE = "bed_assignments.end_note"  # a discharge's note (migration 0014: never stored in clear)
VISIT_NOTE = "resident_visits.note"  # a visit's note (migration 0031: never stored in clear)

SEALING = Sealing(
    since=12,  # the migration that added the encrypted columns
    what="health text",
    tables=(
        ClearTable(
            "hospital_stays",
            "id",
            (ClearColumn("hospital", "hospital <> ''", "''"), ClearColumn("note", "note <> ''", "''")),
        ),
        ClearTable("deaths", "resident_id", (ClearColumn("place", "place <> ''", "''"),)),
    ),
)
