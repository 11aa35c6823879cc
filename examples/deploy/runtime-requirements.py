"""Prints the runtime part of requirements.lock (hashes kept): the project's dependencies
and what they pull in, found through the lock's `# via` notes, without the dev tools. The
Dockerfile installs the image from it with `pip --require-hashes`, so the image gets
exactly the versions CI tested, and none of the linters or test servers.

    python runtime-requirements.py requirements.lock pyproject.toml > runtime.lock
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PROJECT = "plexica-gitops"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def blocks(lock: str) -> dict[str, tuple[str, set[str]]]:
    """Each pinned package: (its lines, the packages it is there for). A universal lock may
    pin one package twice, for different Pythons (networkx): both are kept."""
    found: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==", block)
        if not match:
            continue  # the header
        via = re.findall(r"^[ \t]+#[ \t]+(?:via[ \t]+)?([A-Za-z0-9][A-Za-z0-9._-]*)", block, re.M)
        name = normalise(match[1])
        lines, for_ = found.get(name, ("", set()))
        for_ |= {normalise(v) for v in via} - {"via"}
        found[name] = (lines + block.rstrip() + "\n", for_)
    return found


def runtime_roots(pyproject: str) -> set[str]:
    """The runtime dependencies, with the packages their extras add (psycopg[binary])."""
    roots = set()
    for requirement in tomllib.loads(pyproject)["project"]["dependencies"]:
        match = re.match(r"([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?", requirement)
        assert match, requirement
        name, extras = match[1], (match[2] or "").split(",")
        roots.add(normalise(name))
        roots.update(normalise(f"{name}-{extra.strip()}") for extra in extras if extra.strip())
    return roots


def runtime(lock: str, pyproject: str) -> str:
    packages = blocks(lock)
    wanted = runtime_roots(pyproject) & packages.keys()
    while True:  # a package is needed when one it is there for is needed
        more = {name for name, (_, via) in packages.items() if via & wanted} - wanted
        if not more:
            break
        wanted |= more
    return "".join(packages[name][0] for name in sorted(wanted))


if __name__ == "__main__":
    lock_path, pyproject_path = sys.argv[1:3]
    sys.stdout.write(runtime(Path(lock_path).read_text(), Path(pyproject_path).read_text()))
