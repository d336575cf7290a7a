"""A refused e-mail leaves no address behind: the attempt's detail and the row's last error keep only the
exception's class and the SMTP reply code (servers repeat the recipient's address in their reply text)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from tests.alerting.conftest import process, put_event
from tests.alerting.receivers import Mailbox
from tests.alerting.test_delivery import _button, _channel, _deliver, _family

from eldercare.platform.crypto import Vault
from eldercare.platform.notify import sender
from eldercare.simulators.seed import SeededHome

ADDRESS = "daughter.li@example.cn"


def test_a_refused_address_is_not_stored_in_the_error_texts(
    db: str, vault: Vault, home: SeededHome, mailbox: tuple[int, Mailbox]
) -> None:
    port, box = mailbox
    box.refused.add(ADDRESS)
    button, bed = _button(home)
    family = _family(db, home, bed)
    _channel(db, vault, family, "email", ADDRESS, 1)
    put_event(db, home, button, "button", {"action": "press"}, datetime.now(UTC))
    process(db, vault)

    assert _deliver(db, vault, port, sender.SenderPolicy(min_interval_s=0)) == 0
    with psycopg.connect(db) as conn:
        details = [
            str(r[0])
            for r in conn.execute(
                "SELECT t.detail FROM notification_attempts t JOIN notifications n ON n.id = t.notification_id"
                " WHERE n.user_id = %s",
                (family,),
            ).fetchall()
        ]
        last = conn.execute("SELECT state, last_error FROM notifications WHERE user_id = %s", (family,)).fetchone()
    assert details == ["email: SMTP: SMTPRecipientsRefused 550"]
    assert last is not None and last == ("pending", "email: SMTP: SMTPRecipientsRefused 550")
    assert box.messages == []
