"""The stack's secrets, generated once per state directory and kept in ``<state>/secrets.json`` (0600)."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.host import write_private
from eldercare.platform.stack.layout import secrets_file

DATA_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Secrets:
    database_password: str  # of the ``eldercare`` database role
    broker_password: str  # of the broker's ``platform`` user
    data_key: str  # base64 of 32 random bytes; encrypts personal data at rest


def generate() -> Secrets:
    return Secrets(
        database_password=secrets.token_urlsafe(24),
        broker_password=secrets.token_urlsafe(24),
        data_key=base64.b64encode(secrets.token_bytes(DATA_KEY_BYTES)).decode(),
    )


def load(state_dir: Path) -> Secrets:
    path = secrets_file(state_dir)
    try:
        document = json.loads(path.read_text())
        return Secrets(**document)
    except FileNotFoundError:
        raise StackError("state", f"no {path.name} in {state_dir}; run `eldercare stack up` first") from None
    except (ValueError, TypeError) as exc:
        raise StackError("state", f"{path} is damaged: {exc}") from exc


def load_or_create(state_dir: Path) -> Secrets:
    if secrets_file(state_dir).exists():
        return load(state_dir)
    fresh = generate()
    write_private(secrets_file(state_dir), json.dumps(asdict(fresh), indent=2) + "\n", mode=0o600)
    return fresh
