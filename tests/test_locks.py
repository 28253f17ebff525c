"""The lock files install what pyproject.toml asks for, the same versions in both, every file hashed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {"runtime": ROOT / "requirements" / "runtime.txt", "test": ROOT / "requirements" / "test.txt"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0)).lower()


def pinned(lock: Path) -> dict[str, tuple[str, int]]:
    """Each package of a lock file: its pinned version and how many file hashes it lists."""
    out, current = {}, None
    for line in lock.read_text(encoding="utf-8").splitlines():
        found = re.match(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", line)
        if found:
            current = _name(found.group(1))
            out[current] = (found.group(2), 0)
        elif current and "--hash=sha256:" in line:
            out[current] = (out[current][0], out[current][1] + 1)
    return out


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def wanted(requirements: list[str]) -> set[str]:
    """The names of requirements that apply to CPython 3.11 (the locks' Python)."""
    return {_name(r) for r in requirements if "python_version < '3.11'" not in r}


def test_every_requirement_is_pinned_with_hashes_in_its_lock(project):
    locks = {name: pinned(path) for name, path in LOCKS.items()}
    missing = wanted(project["dependencies"]) - set(locks["runtime"])
    assert not missing, f"pyproject.toml asks for {sorted(missing)}, which requirements/runtime.txt lacks: make lock"
    missing = wanted(project["dependencies"] + project["optional-dependencies"]["dev"]) - set(locks["test"])
    assert not missing, f"pyproject.toml asks for {sorted(missing)}, which requirements/test.txt lacks: make lock"
    unhashed = [f"{lock}: {name}" for lock, packages in locks.items() for name, (_, hashes) in packages.items()
                if hashes == 0]
    assert not unhashed, unhashed
    assert "setuptools" in locks["runtime"], "the editable install builds without isolation: setuptools is locked"


def test_the_runtime_lock_is_the_test_lock_without_the_test_extras():
    runtime, test = pinned(LOCKS["runtime"]), pinned(LOCKS["test"])
    differ = {name: (v, test.get(name, (None,))[0]) for name, (v, _) in runtime.items() if test.get(name, (None,))[0] != v}
    assert not differ, f"versions differ between the locks: {differ}"
    assert {"pytest", "playwright", "moto"} <= set(test) - set(runtime)
