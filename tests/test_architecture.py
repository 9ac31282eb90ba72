"""The house rules of docs/ARCHITECTURE.md, checked on the code itself: arrows point one way, core/ has
no import cycle, and no module reaches for another module's private (underscore) names."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_LIBRARIES = {"telegram", "discord", "aiohttp", "aiosqlite", "sqlite3", "bots", "storage"}


@functools.cache  # parsed once for every rule (read only)
def _modules(package: str) -> dict[str, ast.Module]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _imports(tree: ast.Module, module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import, TYPE_CHECKING ones included."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join([*parts, base] if base else parts)
            found.append((base, [alias.name for alias in node.names]))
    return found


def test_core_imports_no_platform_library_and_no_front_end() -> None:
    for module, tree in _modules("core").items():
        for imported, _names in _imports(tree, module):
            assert imported.split(".")[0] not in PLATFORM_LIBRARIES, f"{module} imports {imported}"


def test_core_has_no_import_cycle() -> None:
    modules = _modules("core")
    graph = {m: {i for i, _ in _imports(tree, m) if i in modules and i != m} for m, tree in modules.items()}
    # A package's __init__ re-exporting its own modules is not a cycle through the rest of core.
    for name in graph:
        graph[name] = {dep for dep in graph[name] if not (name.startswith(dep + ".") and dep in modules)}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(node):], node])
        visiting.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        visiting.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_no_module_imports_another_modules_private_names() -> None:
    for package in ("core", "bots", "storage"):
        for module, tree in _modules(package).items():
            for imported, names in _imports(tree, module):
                # `_` is gettext, by convention; anything else with a leading underscore is private.
                private = [n for n in names if n.startswith("_") and not n.startswith("__") and n != "_"]
                assert not private, f"{module} imports {private} from {imported}"


def test_core_reaches_into_no_other_objects_private_attributes() -> None:
    """`x._name` is read or written only when `x` is `self` or `cls`: an object's underscore state is its own."""
    found = []
    for module, tree in _modules("core").items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue  # the object's own, as its base class defines it
            found.append(f"{module}:{node.lineno} {ast.unparse(node)}")
    assert not found, "private attributes of other objects: " + ", ".join(found)


def _documented_public(node: ast.Attribute) -> bool:
    """A standard-library name that is public despite its underscore (`os._exit`, `sys._getframe`…)."""
    return isinstance(node.value, ast.Name) and (node.value.id, node.attr) in {("os", "_exit")}


def _is_shim(module: str) -> bool:
    return module.endswith((".shim", "_shim"))


def test_private_third_party_api_is_used_only_in_shims() -> None:
    """A library's private modules and attributes are reached only from its one shim module (pinned by a test
    of its own), so an upgrade that changes them breaks one small file, not an adapter."""
    ours = {"core", "bots", "storage", "tests", "benchmarks"}
    for package in ("bots", "storage"):
        for module, tree in _modules(package).items():
            if _is_shim(module):
                continue
            for imported, _names in _imports(tree, module):
                parts = imported.split(".")
                assert parts[0] in ours or not any(p.startswith("_") for p in parts[1:]), \
                    f"{module} imports the private {imported}"
            if package != "bots":
                continue  # storage's modules reach into their own objects (a store built by a factory)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                        and not _documented_public(node)):
                    raise AssertionError(f"{module}:{node.lineno} reaches for .{node.attr}")
