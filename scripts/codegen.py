"""Generate `generated/` from spec/integration.yaml, or check that the committed copy is current.

    python scripts/codegen.py generate   # rewrite generated/
    python scripts/codegen.py check      # regenerate into a temporary folder and compare

Both code generators are deterministic, so any difference means the spec changed without
`make generate` (or someone edited generated code by hand).
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec" / "integration.yaml"
CLIENT_CONFIG = ROOT / "spec" / "openapi-python-client.yaml"
GENERATED = ROOT / "generated"
BIN = Path(sys.executable).parent

PACKAGE_DOC = '''"""Generated from spec/integration.yaml by `make generate`. Do not edit by hand.

- `generated.models`: pydantic v2 models of every schema (datamodel-code-generator).
- `generated.client`: a typed httpx client (openapi-python-client), used to call the peer.
"""
'''


def _run(*args: str | Path) -> str:
    # Both generators shell out to ruff; the venv's bin comes first so the pinned version runs.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"code generation failed: {' '.join(str(a) for a in args)}")
    return result.stdout


def generate(target: Path) -> None:
    """Write the models and the client for the spec into `target` (created anew)."""
    if target.exists():
        shutil.rmtree(target)  # openapi-python-client's --overwrite leaves stale files behind
    target.mkdir(parents=True)
    (target / "__init__.py").write_text(PACKAGE_DOC)
    # Settings live in [tool.datamodel-codegen] in pyproject.toml. Written via stdout: with
    # --output the formatter would take its line length from whatever folder the file lands in.
    models = _run(BIN / "datamodel-codegen")
    (target / "models.py").write_text(models)
    _run(
        BIN / "openapi-python-client",
        "generate",
        "--path",
        SPEC,
        "--config",
        CLIENT_CONFIG,
        "--meta",
        "none",
        "--output-path",
        target / "client",
    )


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): path.read_text()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def drift() -> list[str]:
    """Return a unified diff between generated/ and a fresh generation; empty when current."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_dir = Path(tmp) / "generated"
        generate(fresh_dir)
        fresh, committed = _tree(fresh_dir), _tree(GENERATED) if GENERATED.exists() else {}
    lines: list[str] = []
    for name in sorted(fresh.keys() | committed.keys()):
        old, new = committed.get(name, ""), fresh.get(name, "")
        if old != new:
            lines.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"generated/{name} (committed)",
                    f"generated/{name} (from spec)",
                )
            )
    return lines


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "generate":
        generate(GENERATED)
        print("generated/ written from spec/integration.yaml")
        return 0
    if command == "check":
        diff = drift()
        if diff:
            sys.stdout.writelines(diff[:400])
            print(
                "\ngenerated/ is out of date with spec/integration.yaml: run `make generate` "
                "and commit the result.",
                file=sys.stderr,
            )
            return 1
        print("generated/ matches spec/integration.yaml")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
