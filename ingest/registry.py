"""Look-ups of gateways and devices by their wire codes, cached, with a short negative cache.

The cache is only an accelerator: a miss asks the database, and an unknown code is asked again after
``retry_s`` so that a device registered a moment ago is found without a restart.

A registry change that takes back what was cached (a gateway revoked, a device retired, re-coded or moved) is
noticed within milliseconds by every ingest process: the database notifies it (migration 0022) with the cache key
that changed, the process's :class:`~eldercare.ingest.watch.RegistryWatch` records it, and :meth:`Registry.refresh`,
called at the start of every batch, drops that key (the whole cache only after the watch lost its connection).

A code registered after it was asked for (a gateway or a device added, migration 0025) is notified the same way, so
it is found at once rather than after ``retry_s``.

A device that is retired is told from one that was never registered (:meth:`Registry.device_cause`), so what is
quarantined for it says which: an operator looks for a retirement, not for a missing registration.

A revoked gateway is never cached: it is asked again each time, so that one re-admitted (new credentials,
``POST /gateways/{id}/credentials``) is stored again from its first frame on, in every ingest process, even before
the notification of its re-admission arrives. It costs nothing where it matters: a revoked gateway cannot log in
to the broker, so what reaches ingest from it is its last will and whatever was queued before the revocation, and
each of those is quarantined (a row written) anyway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psycopg

if TYPE_CHECKING:
    from eldercare.ingest.watch import RegistryWatch

Conn = psycopg.Connection[tuple[Any, ...]]

# why a device code has no id: the cause of its messages' quarantine (also a metric's label)
DeviceCause = Literal["unknown_device", "retired_device"]


@dataclass(frozen=True, slots=True)
class GatewayRef:
    pk: int
    institution_id: int
    revoked: bool


class Registry:
    def __init__(self, *, retry_s: float, watch: RegistryWatch | None = None) -> None:
        """Without ``watch`` nothing cached is ever dropped (a short-lived registry: a replay, a test)."""
        self._retry_s = retry_s
        self._watch = watch
        self._generation = 0
        self._gateways: dict[tuple[str, str], GatewayRef] = {}
        self._devices: dict[tuple[int, str], int] = {}
        self._unknown: dict[tuple[object, str], float] = {}
        self._retired: set[tuple[int, str]] = set()  # of the device codes in ``_unknown``, those of retired devices

    def _recently_unknown(self, key: tuple[object, str]) -> bool:
        seen = self._unknown.get(key)
        return seen is not None and time.monotonic() - seen < self._retry_s

    def gateway(self, conn: Conn, institution: str, gateway: str) -> GatewayRef | None:
        key = (institution, gateway)
        found = self._gateways.get(key)
        if found is not None or self._recently_unknown(key):
            return found
        row = conn.execute(
            "SELECT g.id, g.institution_id, g.revoked_at IS NOT NULL FROM gateways g"
            " JOIN institutions i ON i.id = g.institution_id WHERE i.code = %s AND g.gateway_id = %s",
            (institution, gateway),
        ).fetchone()
        if row is None:
            self._unknown[key] = time.monotonic()
            return None
        ref = GatewayRef(row[0], row[1], row[2])
        if not ref.revoked:
            self._gateways[key] = ref
        return ref

    def devices(self, conn: Conn, institution_id: int, codes: set[str]) -> dict[str, int]:
        """Device ids for the codes that exist in this institution; unknown and retired codes are left out."""
        result: dict[str, int] = {}
        missing: list[str] = []
        for code in codes:
            device_id = self._devices.get((institution_id, code))
            if device_id is not None:
                result[code] = device_id
            elif not self._recently_unknown((institution_id, code)):
                missing.append(code)
        if missing:
            # a code is one device's in its institution (a UNIQUE key), retired or not
            rows = conn.execute(
                "SELECT code, id, retired_at IS NOT NULL FROM devices WHERE institution_id = %s AND code = ANY(%s)",
                (institution_id, missing),
            ).fetchall()
            retired: set[str] = set()
            for code, device_id, is_retired in rows:
                if is_retired:
                    retired.add(code)
                else:
                    self._devices[(institution_id, code)] = device_id
                    result[code] = device_id
            now = time.monotonic()
            for code in set(missing) - result.keys():
                key = (institution_id, code)
                self._unknown[key] = now
                if code in retired:
                    self._retired.add(key)
                else:
                    self._retired.discard(key)
        return result

    def device_ids(self, conn: Conn, institution_id: int, codes: list[str]) -> list[int | None]:
        """The device id of each code, in order (None for unknown or retired ones, :meth:`device_cause` says which);
        one query for all cache misses."""
        cache = self._devices
        found = [cache.get((institution_id, code)) for code in codes]
        if None in found:
            known = self.devices(conn, institution_id, {c for c, f in zip(codes, found, strict=True) if f is None})
            found = [f if f is not None else known.get(c) for c, f in zip(codes, found, strict=True)]
        return found

    def device_cause(self, institution_id: int, code: str) -> DeviceCause:
        """Why :meth:`device_ids` (or :meth:`devices`) left ``code`` out: ``retired_device`` when the code is a
        retired device's, ``unknown_device`` when no device of the institution has it (as of that look-up: no query
        here). The cause of its message's quarantine (:meth:`device_reason` says it in words)."""
        return "retired_device" if (institution_id, code) in self._retired else "unknown_device"

    def device_reason(self, institution_id: int, code: str) -> tuple[DeviceCause, str]:
        """:meth:`device_cause`, and the reason a message of ``code`` is quarantined for: ``retired device 'X'``."""
        cause = self.device_cause(institution_id, code)
        return cause, f"{cause.replace('_', ' ')} {code!r}"

    def refresh(self) -> None:
        """Drop what changed in the registry since the last call: one integer comparison when nothing did."""
        watch = self._watch
        if watch is None or watch.generation == self._generation:
            return
        # the generation comes with its keys: a change notified after this moves it on, for the next call
        self._generation, keys = watch.changes_since(self._generation)
        if keys is None:
            self.forget()
            return
        for key in keys:
            scope, code = key
            if isinstance(scope, int):
                self._devices.pop((scope, code), None)
                self._retired.discard((scope, code))
            else:
                self._gateways.pop((scope, code), None)
            self._unknown.pop(key, None)

    def forget(self) -> None:
        """Drop everything cached."""
        self._gateways.clear()
        self._devices.clear()
        self._unknown.clear()
        self._retired.clear()
