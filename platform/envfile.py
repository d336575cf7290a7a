"""Where the settings come from: the environment's ``ELDERCARE_*`` variables and the env file, found without
importing the settings themselves (pydantic), so that a command that may need none (a gateway's) pays nothing."""

from __future__ import annotations

import os
from pathlib import Path

ENV_PREFIX = "ELDERCARE_"
ENV_FILE_NAME = "eldercare.env"


def state_dir() -> Path:
    """Where the local stack keeps its data, certificates and env file."""
    return Path(os.environ.get(f"{ENV_PREFIX}STATE_DIR", "state")).resolve()


def env_file() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}ENV_FILE", str(state_dir() / ENV_FILE_NAME)))
