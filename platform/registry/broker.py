"""Broker provisioning through the local stack's password file and ACL (see ``platform/stack``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eldercare.platform.stack import broker_auth


@dataclass(frozen=True, slots=True)
class LocalBroker:
    """A :class:`~eldercare.platform.registry.service.BrokerProvisioner` for the stack in ``state_dir``."""

    state_dir: Path

    def provision(self, *, institution: str, gateway: str, password: str) -> None:
        broker_auth.provision_gateway(self.state_dir, institution=institution, gateway=gateway, password=password)

    def revoke(self, *, gateway: str) -> None:
        broker_auth.revoke_gateway(self.state_dir, gateway=gateway)
