"""Where each part keeps its files inside the state directory, named once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ENV_FILE_NAME = "eldercare.env"  # the same name platform/config.py reads


@dataclass(frozen=True, slots=True)
class AuthPaths:
    """The broker logins' files in one folder: the stack's broker folder, or production's shared auth folder."""

    folder: Path
    passwd: Path
    acl: Path
    users: Path  # the list passwd and acl are generated from
    lock: Path


def auth_paths(folder: Path) -> AuthPaths:
    return AuthPaths(
        folder=folder,
        passwd=folder / "passwd",
        acl=folder / "acl",
        users=folder / "users.json",
        lock=folder / ".users.lock",
    )


@dataclass(frozen=True, slots=True)
class BrokerPaths:
    folder: Path
    config: Path
    passwd: Path
    acl: Path
    users: Path
    lock: Path
    pid: Path
    log: Path
    data: Path


@dataclass(frozen=True, slots=True)
class PostgresPaths:
    folder: Path
    data: Path
    run: Path  # the unix socket folder
    log: Path
    settings: Path  # our settings, included from postgresql.conf


def broker_paths(state_dir: Path) -> BrokerPaths:
    folder = state_dir / "mosquitto"
    auth = auth_paths(folder)
    return BrokerPaths(
        folder=folder,
        config=folder / "mosquitto.conf",
        passwd=auth.passwd,
        acl=auth.acl,
        users=auth.users,
        lock=auth.lock,
        pid=folder / "mosquitto.pid",
        log=folder / "mosquitto.log",
        data=folder / "data",
    )


def postgres_paths(state_dir: Path) -> PostgresPaths:
    folder = state_dir / "postgres"
    return PostgresPaths(
        folder=folder,
        data=folder / "data",
        run=folder / "run",
        log=folder / "postgres.log",
        settings=folder / "data" / "eldercare.conf",
    )


def secrets_file(state_dir: Path) -> Path:
    return state_dir / "secrets.json"


def stack_file(state_dir: Path) -> Path:
    """The ports and host the stack was last brought up with."""
    return state_dir / "stack.json"


def env_file(state_dir: Path) -> Path:
    return state_dir / ENV_FILE_NAME
