"""Reproducible installs: every third-party module the code and the tests import is a
declared dependency (the runtime code only the runtime ones), and the lock pins each
declared dependency. A package that is merely present on the machine proves nothing: it
happened with `click`, imported by a test, no longer pulled in by typer."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
RUNTIME_SOURCES = ("plexica_gitops", "providers")
DEV_SOURCES = ("devenv", "tests", "bench")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0])


def _declared() -> tuple[set[str], set[str]]:
    """The runtime and the dev distributions pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    dev = {_requirement_name(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def _first_party() -> set[str]:
    """Our own packages, and the helper modules tests and benchmarks import by name."""
    names = {"plexica_gitops", "plexica_gitops_docker", "plexica_gitops_kubernetes", "devenv"}
    for folder in ("tests", "tests/unit", "tests/integration", "bench"):  # pytest's pythonpath
        names.update(path.stem for path in (ROOT / folder).glob("*.py"))
    return names


def _imports(path: Path) -> set[str]:
    """Top-level modules a file imports, `importlib.import_module("x")` included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def _third_party_imports(sources: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the files (relative to the repository) that import it."""
    skip = set(sys.stdlib_module_names) | _first_party()
    modules: dict[str, set[str]] = {}
    for source in sources:
        for path in sorted((ROOT / source).rglob("*.py")):
            for module in _imports(path) - skip:
                modules.setdefault(module, set()).add(path.relative_to(ROOT).as_posix())
    return modules


def _undeclared(sources: tuple[str, ...], allowed: set[str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(_third_party_imports(sources).items()):
        provided_by = {_normalise(d) for d in distributions.get(module, [])}
        if not provided_by & allowed:
            where = ", ".join(sorted(files)[:3])
            installed = ", ".join(sorted(provided_by)) or "nothing installed provides it"
            problems.append(f"{module} (imported by {where}; {installed})")
    return problems


def test_the_runtime_code_imports_only_runtime_dependencies() -> None:
    runtime, _ = _declared()
    assert _undeclared(RUNTIME_SOURCES, runtime) == [], "declare it in [project] dependencies"


def test_tests_benchmarks_and_devenv_import_only_declared_dependencies() -> None:
    runtime, dev = _declared()
    assert _undeclared(DEV_SOURCES, runtime | dev) == [], "declare it in the dev extra"


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", LOCK.read_text(), re.M)
    return {_normalise(name): version for name, version in pins}


def test_the_lock_pins_every_declared_dependency_with_hashes() -> None:
    runtime, dev = _declared()
    locked = _locked()
    assert sorted((runtime | dev) - set(locked)) == [], (
        "requirements.lock is stale: refresh it (see its first lines)"
    )
    # pip checks the hashes (hash-checking mode) only when every pin has one
    unhashed = re.findall(r"^(\S+==\S+)[^\n]*\n(?!\s+--hash=sha256:)", LOCK.read_text(), re.M)
    assert unhashed == []
