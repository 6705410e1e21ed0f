"""generated/ is exactly what the spec produces: editing the spec without `make generate` fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_matches_the_spec() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/codegen.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr


def test_a_spec_edit_without_regeneration_is_caught(tmp_path: Path) -> None:
    """The check is not vacuous: a copy of the repo with an edited spec fails with a clear hint."""
    copy = tmp_path / "repo"
    for part in ["spec", "generated", "scripts"]:
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    spec = copy / "spec" / "integration.yaml"
    spec.write_text(spec.read_text().replace("maxLength: 4096", "maxLength: 4000"))
    result = subprocess.run(
        [sys.executable, "scripts/codegen.py", "check"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "run `make generate`" in result.stderr
    assert "max_length=4000" in result.stdout


def test_generated_models_and_client_import() -> None:
    from generated import models
    from generated.client import AuthenticatedClient
    from generated.client.api.crm import create_ticket, post_message
    from generated.client.api.tma import post_status

    assert models.SenderType.__members__.keys() == {"tma", "crm"}
    for module in (create_ticket, post_message, post_status):
        assert callable(module.asyncio_detailed)
    assert AuthenticatedClient.__name__ == "AuthenticatedClient"
