"""Fail when spec/integration.yaml breaks the released contract without a new major version.

    python -m scripts.contract_compat        # or: make check-contract (part of make test)

The released contract is the newest file in spec/released/ (named by its version, e.g.
1.0.0.yaml). A change is breaking when a peer built against the released contract could fail
against the current one (docs/design.md §6):

- what a receiver accepts (request bodies and parameters) may only grow: no operation, field or
  enum value removed, no field newly required, no type or bound narrowed, no new security
  requirement;
- what a sender may get back (2xx answers) may only shrink: no field removed or made optional, no
  type widened, no enum value added (a generated client of the old version would refuse it), no
  success status removed.

oasdiff is the usual tool for this; it is Go and needs a newer toolchain than this machine's
Debian has, so this small checker enforces the rules above, each covered by
tests/test_contract_compat.py. It reads `$ref`s inside the document and compares `anyOf` /
`oneOf` alternatives position by position.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CURRENT = ROOT / "spec" / "integration.yaml"
RELEASED = ROOT / "spec" / "released"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Bounds where a smaller value is narrower, and where a larger one is.
UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
# Keywords that narrow what a schema admits when they appear or change.
NARROWING = ("pattern", "format", "const", "multipleOf")

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Breaking:
    rule: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}: {self.detail}"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-")[0].split("."))


class _Spec:
    """A loaded OpenAPI document that resolves its own `$ref`s."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def resolve(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, Mapping) and "$ref" in node:
            reference = str(node["$ref"])
            if not reference.startswith("#/") or seen > 50:
                raise ValueError(f"cannot resolve {reference!r}")
            target: Any = self.document
            for part in reference[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node, seen = target, seen + 1
        return node

    def operations(self) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
        for path, item in (self.document.get("paths") or {}).items():
            item = self.resolve(item)
            for method in METHODS:
                if method in item:
                    yield f"{method.upper()} {path}", item, self.resolve(item[method])

    def security(self, operation: Mapping[str, Any]) -> set[str]:
        requirements = operation.get("security", self.document.get("security") or [])
        return {name for requirement in requirements for name in requirement}


def _types(schema: Schema) -> set[str] | None:
    """The JSON types a schema admits, or None when it does not say."""
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


class _Comparison:
    def __init__(self, old: _Spec, new: _Spec) -> None:
        self.old, self.new = old, new
        self.found: list[Breaking] = []
        self._compared: set[tuple[int, int, str]] = set()

    def add(self, rule: str, where: str, detail: str) -> None:
        self.found.append(Breaking(rule, where, detail))

    def schemas(self, old: Any, new: Any, where: str, *, request: bool) -> None:
        """Compare two schemas as a receiver (request=True) or as a sender's answer."""
        old, new = self.old.resolve(old or {}), self.new.resolve(new or {})
        key = (id(old), id(new), "request" if request else "response")
        if key in self._compared:  # recursive schemas, and one schema reached by many paths
            return
        self._compared.add(key)
        self._types(old, new, where, request=request)
        self._enum(old, new, where, request=request)
        if request:
            self._bounds(old, new, where)
        self._alternatives(old, new, where, request=request)
        self._properties(old, new, where, request=request)
        if "items" in old or "items" in new:
            self.schemas(old.get("items"), new.get("items"), f"{where}[]", request=request)

    def _types(self, old: Schema, new: Schema, where: str, *, request: bool) -> None:
        before, after = _types(old), _types(new)
        if before == after:
            return
        if request and (after is not None and (before is None or not before <= after)):
            self.add("request-type-narrowed", where, f"{sorted(before or [])} -> {sorted(after)}")
        if not request and (before is not None and (after is None or not after <= before)):
            self.add("response-type-widened", where, f"{sorted(before)} -> {sorted(after or [])}")

    def _enum(self, old: Schema, new: Schema, where: str, *, request: bool) -> None:
        before, after = old.get("enum"), new.get("enum")
        if request and after is not None:
            removed = [v for v in (before or []) if v not in after]
            if before is None or removed:
                self.add("request-enum-narrowed", where, f"no longer accepted: {removed or 'any'}")
        if not request and before is not None:
            added = [v for v in (after or []) if v not in before]
            if after is None or added:
                self.add("response-enum-widened", where, f"new values: {added or 'any'}")

    def _bounds(self, old: Schema, new: Schema, where: str) -> None:
        for keyword in UPPER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                self.add(
                    "request-bound-narrowed",
                    where,
                    f"{keyword} {old.get(keyword)} -> {new[keyword]}",
                )
        for keyword in LOWER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                self.add(
                    "request-bound-narrowed",
                    where,
                    f"{keyword} {old.get(keyword)} -> {new[keyword]}",
                )
        for keyword in NARROWING:
            if keyword in new and new.get(keyword) != old.get(keyword):
                self.add(
                    "request-bound-narrowed",
                    where,
                    f"{keyword} {old.get(keyword)!r} -> {new[keyword]!r}",
                )

    def _alternatives(self, old: Schema, new: Schema, where: str, *, request: bool) -> None:
        for keyword in ("anyOf", "oneOf", "allOf"):
            before, after = old.get(keyword) or [], new.get(keyword) or []
            if not before and not after:
                continue
            if len(before) != len(after):
                self.add(
                    "alternatives-changed",
                    where,
                    f"{keyword}: {len(before)} -> {len(after)} schemas",
                )
                continue
            for index, (a, b) in enumerate(zip(before, after, strict=True)):
                self.schemas(a, b, f"{where}<{keyword}[{index}]>", request=request)

    def _properties(self, old: Schema, new: Schema, where: str, *, request: bool) -> None:
        before, after = old.get("properties") or {}, new.get("properties") or {}
        required_before, required_after = (
            set(old.get("required") or []),
            set(new.get("required") or []),
        )
        for name in before:
            if name not in after:
                rule = "request-field-removed" if request else "response-field-removed"
                if request or name in required_before:
                    self.add(rule, f"{where}.{name}", "removed (a rename is a removal)")
                continue
            if not request and name in required_before and name not in required_after:
                self.add("response-field-optional", f"{where}.{name}", "no longer required")
            self.schemas(before[name], after[name], f"{where}.{name}", request=request)
        if request:
            for name in sorted(required_after - required_before):
                self.add("request-field-required", f"{where}.{name}", "newly required")

    def parameters(self, old_op: Mapping[str, Any], new_op: Mapping[str, Any], where: str) -> None:
        def by_key(spec: _Spec, operation: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
            params = (spec.resolve(p) for p in operation.get("parameters") or [])
            return {(p["in"], p["name"]): p for p in params}

        before, after = by_key(self.old, old_op), by_key(self.new, new_op)
        for key, parameter in after.items():
            if key not in before and parameter.get("required"):
                self.add(
                    "request-field-required", f"{where} {key[0]}:{key[1]}", "new required parameter"
                )
        for key, parameter in before.items():
            if key not in after:
                self.add("request-field-removed", f"{where} {key[0]}:{key[1]}", "parameter removed")
                continue
            if after[key].get("required") and not parameter.get("required"):
                self.add("request-field-required", f"{where} {key[0]}:{key[1]}", "newly required")
            self.schemas(
                parameter.get("schema"),
                after[key].get("schema"),
                f"{where} {key[0]}:{key[1]}",
                request=True,
            )

    def operations(self) -> None:
        current = {name: op for name, _, op in self.new.operations()}
        for name, _, old_op in self.old.operations():
            new_op = current.get(name)
            if new_op is None:
                self.add("operation-removed", name, "no longer served")
                continue
            added = self.new.security(new_op) - self.old.security(old_op)
            if added:
                self.add("security-added", name, f"now also requires {sorted(added)}")
            self.parameters(old_op, new_op, name)
            self._request_body(old_op, new_op, name)
            self._responses(old_op, new_op, name)

    def _request_body(
        self, old_op: Mapping[str, Any], new_op: Mapping[str, Any], where: str
    ) -> None:
        old_body = self.old.resolve(old_op.get("requestBody") or {})
        new_body = self.new.resolve(new_op.get("requestBody") or {})
        if new_body.get("required") and not old_body.get("required"):
            self.add("request-field-required", f"{where} body", "the body is now required")
        for media, content in (old_body.get("content") or {}).items():
            new_content = (new_body.get("content") or {}).get(media)
            if new_content is None:
                self.add("request-media-removed", f"{where} body", f"{media} no longer accepted")
                continue
            self.schemas(
                content.get("schema"), new_content.get("schema"), f"{where} body", request=True
            )

    def _responses(self, old_op: Mapping[str, Any], new_op: Mapping[str, Any], where: str) -> None:
        new_responses = new_op.get("responses") or {}
        for status, response in (old_op.get("responses") or {}).items():
            if not str(status).startswith("2"):
                continue
            if status not in new_responses:
                self.add("response-status-removed", f"{where} {status}", "success answer removed")
                continue
            old_content = self.old.resolve(response).get("content") or {}
            new_content = self.new.resolve(new_responses[status]).get("content") or {}
            for media, content in old_content.items():
                if media in new_content:
                    self.schemas(
                        content.get("schema"),
                        new_content[media].get("schema"),
                        f"{where} {status}",
                        request=False,
                    )
                else:
                    self.add(
                        "response-media-removed", f"{where} {status}", f"{media} no longer sent"
                    )


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Breaking]:
    """Every way `new` breaks a peer built against `old` (see the module docstring)."""
    comparison = _Comparison(_Spec(old), _Spec(new))
    comparison.operations()
    return comparison.found


def newest_release(folder: Path = RELEASED) -> Path | None:
    releases = sorted(folder.glob("*.yaml"), key=lambda p: version_tuple(p.stem))
    return releases[-1] if releases else None


def check(current: Path = CURRENT, released: Path = RELEASED) -> tuple[bool, list[str]]:
    """(passes, lines to print) for the current spec against the newest release."""
    release = newest_release(released)
    if release is None:
        return False, [f"no released contract in {released}: freeze one (see docs/design.md §6)"]
    old, new = yaml.safe_load(release.read_text()), yaml.safe_load(current.read_text())
    old_version, new_version = str(old["info"]["version"]), str(new["info"]["version"])
    if version_tuple(old_version) != version_tuple(release.stem):
        return False, [f"{release.name} says version {old_version}: the file name must match it"]
    if version_tuple(new_version) < version_tuple(old_version):
        return False, [f"the spec's version {new_version} is older than the released {old_version}"]
    found = breaking_changes(old, new)
    lines = [f"  {change}" for change in found]
    if not found:
        return True, [f"contract {new_version}: compatible with the released {old_version}"]
    if version_tuple(new_version)[0] > version_tuple(old_version)[0]:
        return True, [
            f"contract {new_version}: {len(found)} breaking change(s) against {old_version}, "
            "allowed by the new major version:",
            *lines,
        ]
    return False, [
        f"contract {new_version} breaks the released {old_version} in {len(found)} way(s); "
        "keep the old behaviour or move to a new major version (docs/design.md §6):",
        *lines,
    ]


def main() -> int:
    passes, lines = check()
    print("\n".join(lines), file=sys.stdout if passes else sys.stderr)
    return 0 if passes else 1


if __name__ == "__main__":
    raise SystemExit(main())
