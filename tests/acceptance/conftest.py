"""Run the real `mailcrm` command in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


CLI = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """`cli("customers", "list", "--json")` runs mailcrm in `tmp_path` with a 60 s bound."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    env["COLUMNS"] = "200"

    def run(*args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None) -> Result:
        completed = subprocess.run(
            [sys.executable, "-m", "mailcrm", *args],
            cwd=tmp_path,
            env={**env, **(extra_env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    return run
