"""What a running stack offers to the rest of the code: where things are and how to log in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Ports:
    postgres: int = 55432
    mqtt: int = 51883  # plain MQTT, bound to 127.0.0.1 only, password + ACL
    mqtt_tls: int = 58883  # MQTT over TLS for gateways, password + ACL
    api: int = 8080


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """A broker login. Gateways get one each; ``institution``/``gateway`` set their ACL."""

    username: str
    password_hash: str  # mosquitto's PBKDF2-SHA512 form: $7$iterations$salt$hash
    kind: str  # "platform" or "gateway"
    institution: str | None = None
    gateway: str | None = None


@dataclass(frozen=True, slots=True)
class StackInfo:
    state_dir: Path
    ports: Ports
    database_url: str  # libpq URL of the application database, user with a password
    admin_database_url: str  # same cluster, superuser over the socket, for migrations and test DBs
    ca_file: Path  # the stack's CA certificate (PEM), for TLS clients
    platform_username: str
    platform_password: str
    mqtt_host: str = "127.0.0.1"
