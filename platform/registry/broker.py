"""Broker provisioners: who writes the broker's logins, and how the broker is made to read them.

- :class:`LocalBroker`, for the stack of ``eldercare stack up`` (development, tests, the demo): writes the
  files in ``<state>/mosquitto`` and SIGHUPs the broker, whose pid and log it can see.
- :class:`SharedBroker`, for production (``docker-compose.yml``): the broker runs in another container. The
  platform writes the files into a folder the two share (``ELDERCARE_BROKER_AUTH_DIR``), then raises the
  number in ``reload.request``. The broker container's entrypoint (``deploy/mosquitto/entrypoint.sh``) copies
  the files to where mosquitto reads them, SIGHUPs it, waits until it has begun to reload, and writes the
  number into ``reload.done``. A provisioning returns only then, so a revoked gateway is locked out when the
  call returns; no acknowledgement within the timeout raises ``StackError`` (a 503 from the API).

An acknowledgement of number N means the broker loaded files at least as new as those written before N was
requested: the entrypoint reads the request, then copies the files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from eldercare.platform.registry.service import BrokerProvisioner
from eldercare.platform.stack import broker_auth
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.host import write_private

REQUEST_FILE = "reload.request"
DONE_FILE = "reload.done"
POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class LocalBroker:
    """A :class:`~eldercare.platform.registry.service.BrokerProvisioner` for the stack in ``state_dir``."""

    state_dir: Path

    def provision(self, *, institution: str, gateway: str, password: str) -> None:
        broker_auth.provision_gateway(self.state_dir, institution=institution, gateway=gateway, password=password)

    def revoke(self, *, gateway: str) -> None:
        broker_auth.revoke_gateway(self.state_dir, gateway=gateway)


@dataclass(frozen=True, slots=True)
class SharedBroker:
    """A provisioner for a broker in another container that shares the folder ``folder`` (see above)."""

    folder: Path
    timeout_s: float = 10.0

    def provision(self, *, institution: str, gateway: str, password: str) -> None:
        broker_auth.put_gateway(self.folder, institution=institution, gateway=gateway, password=password, owner=None)
        self.apply()

    def revoke(self, *, gateway: str) -> None:
        # Applied even when the login was already gone: a revocation whose reload timed out (a 503) is retried,
        # and the retry must not report it done before the broker has it.
        broker_auth.drop_gateway(self.folder, gateway=gateway, owner=None)
        self.apply()

    def set_platform_password(self, password: str) -> int:
        """Write the platform's own login (and regenerate both files); the reload number the broker applied."""
        broker_auth.set_platform_password(self.folder, password=password)
        broker_auth.rewrite_auth_files(self.folder, owner=None)
        return self.apply()

    def apply(self) -> int:
        """Ask the broker to read the files, and wait until it has; the request's number."""
        number = request_reload(self.folder)
        wait_reloaded(self.folder, number, timeout_s=self.timeout_s)
        return number


def request_reload(folder: Path) -> int:
    """Raise the request number (never below one already acknowledged) and return it."""
    with broker_auth.auth_lock(folder):
        number = max(_number(folder / REQUEST_FILE), applied(folder)) + 1
        write_private(folder / REQUEST_FILE, f"{number}\n", mode=0o644)
    return number


def wait_reloaded(folder: Path, number: int, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while applied(folder) < number:
        if time.monotonic() >= deadline:
            raise StackError(
                broker_auth.PART,
                f"the broker did not acknowledge reload {number} in {folder / DONE_FILE} within {timeout_s:g} s "
                "(is the mosquitto container running deploy/mosquitto/entrypoint.sh?)",
            )
        time.sleep(POLL_S)


def applied(folder: Path) -> int:
    """The last reload number the broker acknowledged (0 before the first)."""
    return _number(folder / DONE_FILE)


def _number(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdecimal() else 0


def from_settings() -> BrokerProvisioner:
    """The shared folder's provisioner when ``ELDERCARE_BROKER_AUTH_DIR`` is set, else the local stack's."""
    from eldercare.platform.config import BrokerSettings
    from eldercare.platform.envfile import state_dir

    settings = BrokerSettings()
    if settings.broker_auth_dir is not None:
        return SharedBroker(settings.broker_auth_dir, timeout_s=settings.broker_reload_timeout_s)
    return LocalBroker(state_dir())
