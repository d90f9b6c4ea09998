#!/usr/bin/env python3
"""Checks that dependencies between the crate's modules run one way:
api -> engine -> backend ports -> domain (docs/DESIGN.md has the map).

Reads every `crate::...` and `super::...` path in src/ (outside comments and
`#[cfg(test)]` modules), resolves it to the unit it names, and fails listing
each import a unit is not allowed to make. A new back-edge fails scripts/test.
Usage: scripts/check-deps.py [SRC_DIR]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# What each unit may import (besides itself). The commands on top (main,
# lib, server, compact, migrate, token, telemetry) may import anything.
ALLOWED: dict[str, set[str]] = {
    "metrics": set(),
    "domain": set(),
    # The ports: what every adapter implements and the engine calls.
    "backend": {"domain", "metrics"},
    "backend::aws": {"backend", "domain", "metrics"},
    "backend::embedded": {"backend", "domain", "metrics"},
    "backend::s3": {"backend", "backend::aws", "domain", "metrics"},
    "backend::dynamo": {"backend", "backend::aws", "domain", "metrics"},
    "backend::conformance": {"backend", "domain"},
    "error": {"backend", "domain"},
    "engine": {"backend", "domain", "error", "metrics"},
    # The HTTP layer: routes, extractors, the auth middleware.
    "api::paths": set(),
    "auth": {"api::paths", "domain", "error"},
    "api": {"api::paths", "auth", "engine", "domain", "error", "metrics"},
    # The one typed configuration composes every part's settings.
    "config": {
        "api", "auth", "backend::aws", "backend::s3", "backend::dynamo", "engine", "domain"
    },
}
TOP = {"main", "lib", "server", "compact", "migrate", "token", "telemetry"}

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^{}]*)\}", re.S)


def module_of(path: Path, src: Path) -> list[str]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def unit_of(segments: list[str]) -> str | None:
    """The unit a module path belongs to: the longest prefix ALLOWED or TOP names."""
    for n in range(len(segments), 0, -1):
        name = "::".join(segments[:n])
        if name in ALLOWED or name in TOP:
            return name
    return None


def code_without_tests_and_comments(text: str) -> str:
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests\b", text, re.M)
    if cut:
        text = text[: cut.start()]
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        lines.append(line.split(" // ")[0])
    return "\n".join(lines)


def references(code: str, here: list[str]) -> list[list[str]]:
    """Module paths the code names, resolved to absolute segments."""
    found: list[list[str]] = []

    def resolve(root: str, rest: list[str]) -> list[str]:
        if root == "crate":
            return rest
        # `super` is the parent of this file's module; each further `super`
        # one level up.
        ups = 1
        while rest and rest[0] == "super":
            ups += 1
            rest = rest[1:]
        return here[: max(len(here) - ups, 0)] + rest

    for m in GROUP.finditer(code):
        head = [s for s in m.group(2).split("::") if s]
        for item in m.group(3).split(","):
            item = item.strip().split(" as ")[0].strip()
            if not item or item == "self":
                found.append(resolve(m.group(1), head))
                continue
            first = item.split("::")
            found.append(resolve(m.group(1), head + [s for s in first if s and s != "{"]))
    code = GROUP.sub("", code)
    for m in PATH.finditer(code):
        rest = [s for s in m.group(2).split("::") if s]
        found.append(resolve(m.group(1), rest))
    return found


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src")
    problems: list[str] = []
    files = sorted(src.rglob("*.rs"))
    for path in files:
        here = module_of(path, src)
        unit = unit_of(here)
        if unit is None:
            problems.append(f"{path.relative_to(src)}: module {'::'.join(here)} is in no unit; add it to ALLOWED or TOP")
            continue
        if unit in TOP:
            continue
        code = code_without_tests_and_comments(path.read_text())
        for ref in references(code, here):
            target = unit_of(ref)
            if target is None or target == unit or target in ALLOWED[unit]:
                continue
            # A unit may always name its own children (declarations, re-exports).
            if target.startswith(unit + "::"):
                continue
            problems.append(f"{path.relative_to(src)}: {unit} imports {target} ({'::'.join(ref)})")
    if problems:
        print("module dependencies that run the wrong way (see docs/DESIGN.md, Module map):")
        for p in sorted(set(problems)):
            print("  " + p)
        return 1
    print(f"module dependencies run one way ({len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
