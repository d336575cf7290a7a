"""The distribution installs both ways, imports as eldercare.<part>, and never shadows the stdlib."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import platform, eldercare, eldercare.devices.messages as m, eldercare.platform.db.migrate as mig;"
    "print(platform.__file__); print(m.__file__);"
    "print(len(mig.available()));"
    "import importlib.resources as r;"
    "print(r.files('eldercare.platform.db').joinpath('data/regions/areas.csv').is_file());"
    "print(r.files('eldercare.devices').joinpath('asyncapi.yaml').is_file())"
)


def _venv_with_our_dependencies(path: Path) -> Path:
    """A bare venv that sees the project's installed dependencies through a .pth file, not its code."""
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    target = Path(
        subprocess.check_output([python, "-c", "import site; print(site.getsitepackages()[0])"], text=True).strip()
    )
    ours = next(p for p in site.getsitepackages() if Path(p, "psycopg").exists())
    (target / "deps.pth").write_text(ours + "\n")
    return python


def _pip(python: Path, *args: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            *args,
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )


def _probe(python: Path) -> list[str]:
    # Run from the repository root: the folder platform/ is right there and must not shadow the stdlib.
    out = subprocess.run([python, "-c", PROBE], check=True, cwd=REPO, capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.parametrize("editable", [True, False], ids=["editable", "plain"])
def test_install(tmp_path: Path, editable: bool) -> None:
    python = _venv_with_our_dependencies(tmp_path / "venv")
    _pip(python, *(["-e", str(REPO)] if editable else [str(REPO)]))
    stdlib_platform, messages_file, migrations, regions, asyncapi = _probe(python)
    assert not stdlib_platform.startswith(str(REPO)), stdlib_platform
    if editable:
        assert messages_file.startswith(str(REPO / "src" / "eldercare")), messages_file
    else:
        assert messages_file.startswith(str(tmp_path / "venv")), messages_file
    assert int(migrations) >= 1
    assert regions == "True"
    assert asyncapi == "True"
    cli = subprocess.run([python.with_name("eldercare"), "--help"], capture_output=True, text=True, check=True)
    for command in ("stack", "db", "serve", "ingest", "demo"):
        assert command in cli.stdout


def test_the_lock_pins_only_registry_packages() -> None:
    """requirements.lock must install on any machine: no local paths, no URLs, no project itself."""
    for number, line in enumerate((REPO / "requirements.lock").read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"requirements.lock:{number}: {line!r} is not name==version"
        assert name.lower() != "eldercare", f"requirements.lock:{number}: the project itself is pinned"
