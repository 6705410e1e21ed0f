"""Generate `generated/` from spec/integration.yaml and the documents of the backends' own APIs
(spec/user-api.yaml, spec/operator-api.yaml) from the apps, or check that the committed copies
are current.

    python scripts/codegen.py generate   # rewrite generated/ and the two API documents
    python scripts/codegen.py check      # regenerate into a temporary folder and compare

Every generator is deterministic, so any difference means the spec or an app changed without
`make generate` (or someone edited generated code or a generated document by hand).
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: `scripts.` and the backends import from here
SPEC = ROOT / "spec" / "integration.yaml"
CLIENT_CONFIG = ROOT / "spec" / "openapi-python-client.yaml"
GENERATED = ROOT / "generated"
BIN = Path(sys.executable).parent

PACKAGE_INIT = '''"""Generated from spec/integration.yaml by `make generate`. Do not edit by hand.

- `generated.models`: pydantic v2 models of every schema (datamodel-code-generator).
- `generated.client`: a typed httpx client (openapi-python-client), used to call the peer.
- `CONTRACT_VERSION`: the spec's `info.version`, which both sides announce (docs/design.md §6).
"""

CONTRACT_VERSION = "{version}"
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
    # The version is copied from the spec here, so the running code never reads it twice.
    version = str(yaml.safe_load(SPEC.read_text())["info"]["version"])
    (target / "__init__.py").write_text(PACKAGE_INIT.format(version=version))
    # Settings live in [tool.datamodel-codegen] in pyproject.toml. Written via stdout: with
    # --output the formatter would take its line length from whatever folder the file lands in.
    models = _run(BIN / "datamodel-codegen")
    (target / "models.py").write_text(models)
    generate_client(SPEC, target / "client")


def generate_client(spec: Path, target: Path) -> None:
    """Write the typed httpx client of `spec` into `target`, a package with relative imports
    (the tests also build one from the released contract, spec/released/)."""
    _run(
        BIN / "openapi-python-client",
        "generate",
        "--path",
        spec,
        "--config",
        CLIENT_CONFIG,
        "--meta",
        "none",
        "--output-path",
        target,
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


def _documents() -> dict[str, str]:
    # Imported here: the apps are only needed for the documents, not for generated/.
    from scripts.api_documents import render_documents

    return render_documents()


def write_documents() -> None:
    for name, text in _documents().items():
        (ROOT / name).write_text(text)


def document_drift() -> tuple[list[str], list[str]]:
    """The API documents that differ from what the apps make, and a unified diff of them."""
    stale: list[str] = []
    lines: list[str] = []
    for name, fresh in _documents().items():
        path = ROOT / name
        committed = path.read_text() if path.exists() else ""
        if committed != fresh:
            stale.append(name)
            lines.extend(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    fresh.splitlines(keepends=True),
                    f"{name} (committed)",
                    f"{name} (from the app)",
                )
            )
    return stale, lines


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "generate":
        generate(GENERATED)
        write_documents()
        print("generated/ written from spec/integration.yaml; API documents written from the apps")
        return 0
    if command == "check":
        failed = False
        diff = drift()
        if diff:
            sys.stdout.writelines(diff[:400])
            print(
                "\ngenerated/ is out of date with spec/integration.yaml: run `make generate` "
                "and commit the result.",
                file=sys.stderr,
            )
            failed = True
        stale, document_diff = document_drift()
        if stale:
            sys.stdout.writelines(document_diff[:400])
            print(
                f"\n{' and '.join(stale)} out of date with the app: run `make generate` "
                "and commit the result.",
                file=sys.stderr,
            )
            failed = True
        if failed:
            return 1
        print("generated/ matches spec/integration.yaml; the API documents match the apps")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
