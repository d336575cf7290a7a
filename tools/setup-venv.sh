#!/usr/bin/env bash
# Creates .venv with the locked dependencies and the project installed in editable mode.
# Quick when nothing changed: a stamp holds the hash of requirements.lock and pyproject.toml.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
stamp="$venv/.eldercare-stamp"
want=$(cat "$here/requirements.lock" "$here/pyproject.toml" | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/eldercare" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv" >&2
    "$python" -m venv "$venv"
fi
echo "setup: installing locked Python dependencies" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.lock"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$here"
echo "$want" > "$stamp"
