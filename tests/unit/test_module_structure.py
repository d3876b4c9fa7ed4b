"""The shape of the code: no import cycles, no module reaching into another's private names,
Dagster's internals reached from one seam only, and the domain layer free of Dagster.

Both are read from the source with ``ast``, every import counted (module level, inside functions
and under ``TYPE_CHECKING`` alike): a lazy import that closes a cycle is still a cycle to a
reader.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fin_assets", "resources")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


MODULES = project_modules()


def resolve(name: str) -> str | None:
    """The project module an import names (``a.b.c`` may be module ``a.b`` and its name ``c``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, [], node.lineno) for a in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, names, _ in imports_of(path):
            targets = {resolve(module)}
            # `from package import module` imports the submodule
            targets |= {resolve(f"{module}.{n}") for n in names if f"{module}.{n}" in MODULES}
            graph[name] |= {t for t in targets if t is not None and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_scan_sees_the_packages() -> None:
    # A check over nothing passes vacuously: make sure the layers are there to be checked.
    assert {"fin_assets.definitions", "resources.http.client", "resources.raw.ingest"} <= set(
        MODULES
    )
    assert len(MODULES) > 40


def test_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None, (
        f"import cycle: {' -> '.join(find_cycle(import_graph()) or [])}"
    )


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_imported_from_another_module(name: str) -> None:
    offences = [
        f"{MODULES[name].relative_to(ROOT)}:{line}: {module}.{taken}"
        for module, names, line in imports_of(MODULES[name])
        if resolve(module) not in (None, name)
        for taken in names
        if taken.startswith("_")
    ]
    assert not offences, "private names imported across modules:\n" + "\n".join(offences)


# The one package allowed to import Dagster's internals (fin_assets/dagster_internals/__init__.py).
SEAM = "fin_assets.dagster_internals"
# ``dagster._*``, or a module inside a Dagster library (``dagster_celery.tasks``): only a
# library's top level (``from dagster_celery import celery_executor``) is its public API.
DAGSTER_INTERNAL = re.compile(r"^(dagster\._|dagster_[a-z]+\.)")


def dagster_internals_imported(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {module}"
        for module, _names, line in imports_of(path)
        if DAGSTER_INTERNAL.match(module)
    ]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith(SEAM)))
def test_only_the_seam_imports_dagster_internals(name: str) -> None:
    offences = dagster_internals_imported(MODULES[name])
    assert not offences, (
        f"Dagster internals imported outside {SEAM} (move the use into the seam, with a "
        "contract test in tests/unit/test_dagster_contracts.py):\n" + "\n".join(offences)
    )


def test_the_seam_check_finds_a_planted_import(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import dagster as dg\n"
        "from dagster import AssetKey\n"
        "from dagster_celery import celery_executor\n"
        "def later():\n"
        "    from dagster._core.events import EngineEventData\n"
        "    import dagster_celery.tasks\n"
    )
    assert [o.rpartition(": ")[2] for o in dagster_internals_imported(planted)] == [
        "dagster._core.events",
        "dagster_celery.tasks",
    ]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("resources")))
def test_the_domain_layer_is_dagster_free(name: str) -> None:
    dagster = [
        f"{MODULES[name].relative_to(ROOT)}:{line}: {module}"
        for module, _names, line in imports_of(MODULES[name])
        if module == "dagster" or module.startswith(("dagster.", "dagster_"))
    ]
    assert not dagster, "resources/ is the domain layer, free of Dagster:\n" + "\n".join(dagster)


def test_the_provider_registry_does_not_import_the_simulator() -> None:
    # The simulator registers itself (an entry point in pyproject.toml): the product's provider
    # registry must not depend on the project's test server.
    offences = [
        f"{MODULES[name].relative_to(ROOT)}:{line}: {module}"
        for name in MODULES
        if name.startswith("resources.providers")
        for module, _names, line in imports_of(MODULES[name])
        if module.startswith("resources.simulator")
    ]
    assert not offences, "resources/providers imports the simulator:\n" + "\n".join(offences)


# A named tuple's public methods start with an underscore (urlsplit(...)._replace).
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def private_attributes_reached(path: Path) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self`` or ``cls``: another object's private member
    (such as a Dagster context's ``_step_execution_context``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in NAMEDTUPLE_API
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith(SEAM)))
def test_only_the_seam_reaches_into_another_objects_private_members(name: str) -> None:
    offences = private_attributes_reached(MODULES[name])
    assert not offences, (
        f"a private member of another object reached outside {SEAM} (a Dagster object's "
        "belongs in the seam, with a contract test; a project object's wants a public name):\n"
        + "\n".join(offences)
    )


def test_the_private_member_check_finds_one(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "class A:\n"
        "    def f(self, context):\n"
        "        self._mine = cls_ = 1\n"
        "        return context.op_execution_context._step_execution_context, obj.__dict__\n"
    )
    assert private_attributes_reached(planted) == ["planted.py:4: ._step_execution_context"]


# The floors of fin_assets, lowest first: a module imports from its own floor or lower ones.
FLOORS = (
    "fin_assets.dagster_internals",
    "fin_assets.lib",
    "fin_assets.definitions",
    "fin_assets.tools",
)


@functools.cache
def cached_import_graph() -> dict[str, set[str]]:
    return import_graph()


def floor_of(name: str) -> int | None:
    for index, floor in enumerate(FLOORS):
        if name == floor or name.startswith(floor + "."):
            return index
    return None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if floor_of(n) is not None))
def test_no_floor_imports_from_a_floor_above_it(name: str) -> None:
    graph = cached_import_graph()
    floor = floor_of(name)
    assert floor is not None
    above = sorted(t for t in graph[name] if (f := floor_of(t)) is not None and f > floor)
    assert not above, f"{name} ({FLOORS[floor]}) imports from a floor above it: {above}"
