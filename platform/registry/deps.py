"""Request dependencies of the registry: the personal-data vault and the broker provisioner.

Both live on ``app.state`` when the application (or a test) put them there; otherwise they are built once
from the settings: the data key from ``ELDERCARE_DATA_KEY``, the broker of the local stack in the state
directory, or production's shared folder when ``ELDERCARE_BROKER_AUTH_DIR`` is set (``registry/broker.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from eldercare.platform.crypto import Vault
from eldercare.platform.registry.service import BrokerProvisioner


def vault(request: Request) -> Vault:
    state = request.app.state
    found: Vault | None = getattr(state, "vault", None)
    if found is None:
        from eldercare.platform.config import SecuritySettings

        security = SecuritySettings()
        found = Vault(security.key_bytes(), previous=security.previous_key_bytes())
        state.vault = found
    return found


def broker(request: Request) -> BrokerProvisioner:
    state = request.app.state
    found: BrokerProvisioner | None = getattr(state, "broker", None)
    if found is None:
        from eldercare.platform.registry.broker import from_settings

        found = from_settings()
        state.broker = found
    return found


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


VaultDep = Annotated[Vault, Depends(vault)]
BrokerDep = Annotated[BrokerProvisioner, Depends(broker)]
ClientAddress = Annotated[str, Depends(client_address)]
