"""Alarm text: an alarm's detail (a fall's source, a heart rate out of range, a wanderer's position), its outcome
(what staff found when they closed it) and the note of each change. Health data like the hospital of a stay:
encrypted at rest with the :class:`~eldercare.platform.crypto.Vault`, each value bound to its column. Everything
written here is sealed, the fixed texts of the engine and the ticker as well as what staff type: one rule, no
judging which text is personal, and one AES-GCM operation each (microseconds, on a vault built once).

Before migration 0013 they were stored in clear; ``eldercare db migrate`` seals what is left (:data:`SEALING`,
``platform/db/migrate.py``). Until then, and for a row that a platform of an older version still writes in clear
(between a migrate and its restart), the readers here fall back to the old columns, so no alarm is shown without
its text.

A text that does not decrypt (a wrong data key, a damaged value) is shown as :data:`UNREADABLE` and logged: the
board and the stream must still show the alarm, which is what matters in an emergency.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from eldercare.platform.crypto import DecryptionError, Vault
from eldercare.platform.db.migrate import ClearColumn, ClearTable, Sealing

log = logging.getLogger(__name__)

DETAIL = "alarms.detail"
OUTCOME = "alarms.outcome"
NOTE = "alarm_changes.note"
UNREADABLE = "[unreadable]"
MASK = "***"

SEALING = Sealing(
    since=13,  # the migration that added the encrypted columns
    what="alarm text",
    tables=(
        ClearTable(
            "alarms",
            "id",
            (
                ClearColumn("detail", "detail <> '{}'", "'{}'", text="detail::text"),
                ClearColumn("outcome", "outcome IS NOT NULL", "NULL"),
            ),
        ),
        ClearTable("alarm_changes", "id", (ClearColumn("note", "note <> ''", "''"),)),
    ),
)


def seal_detail(vault: Vault, detail: Mapping[str, Any]) -> bytes | None:
    return vault.encrypt_text(
        json.dumps(detail, ensure_ascii=False, separators=(",", ":")) if detail else None, column=DETAIL
    )


def open_text(vault: Vault, blob: bytes | None, clear: str | None, *, column: str, row: int) -> str | None:
    """The text of ``column`` in row ``row``: decrypted, or the old column's value when it was never sealed."""
    if blob is None:
        return clear
    try:
        return vault.decrypt(bytes(blob), column=column)
    except DecryptionError as exc:
        reason = str(exc)  # no traceback: the reason is all there is
    log.error("%s of row %d does not decrypt (%s); shown as %s", column, row, reason, UNREADABLE)
    return UNREADABLE


def open_detail(vault: Vault, blob: bytes | None, clear: dict[str, Any], *, row: int) -> dict[str, Any]:
    text = open_text(vault, blob, None, column=DETAIL, row=row)
    if text is None:
        return clear
    if text == UNREADABLE:
        return {"unreadable": True}
    found: dict[str, Any] = json.loads(text)
    return found


def mask_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """Regulators see which facts an alarm carries (a position, a heart rate), not their values."""
    return dict.fromkeys(detail, MASK)
