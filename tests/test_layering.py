"""The layers import downwards only: models <- services <- schema <- web/server/workers/cli; infra below all but models.

infra (database, Redis, cache, limits, clock, crypto, metrics, live hub) is used by every
layer above models and knows no domain: it imports none of them.

An AST walk over the source tree; every import counts, also those inside functions
and `if TYPE_CHECKING:` blocks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OUTER_LAYERS = {"strawberry", "starlette", "schema", "web", "workers", "server", "cli", "cli_products"}
DOMAIN = {"models", "services"}
MODELS_MAY_IMPORT = {"tortoise", "models"} | set(sys.stdlib_module_names)


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """The absolute names of the modules a file imports (relative imports resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            found.add(".".join([*base, *([node.module] if node.module else [])]))
    return found


def violations(files: Iterable[Path], allowed: Callable[[str], bool], root: Path = ROOT) -> list[str]:
    return [
        f"{path.relative_to(root)} imports {module}"
        for path in files
        for module in sorted(imports_of(path, root))
        if not allowed(module.split(".")[0])
    ]


class TestWalker:
    """The walker really sees imports, so the layer tests cannot pass on an empty result."""

    def test_it_finds_the_tree(self) -> None:
        assert ROOT / "services" / "accounts.py" in sources("services")
        assert ROOT / "models" / "accounts.py" in sources("models")
        assert ROOT / "schema" / "accounts.py" in sources("schema")

    def test_it_sees_what_a_module_imports(self) -> None:
        imports = imports_of(ROOT / "services" / "accounts.py")
        assert "models" in imports
        assert "tortoise.transactions" in imports
        assert "infra.security" in imports

    def test_it_flags_nested_and_relative_imports(self, tmp_path: Path) -> None:
        # given: a package whose imports hide inside a function and behind relative dots
        package = tmp_path / "services"
        package.mkdir()
        (package / "__init__.py").write_text("")
        module = package / "leaky.py"
        module.write_text(
            "from typing import TYPE_CHECKING\n"
            "from . import clock\n"
            "if TYPE_CHECKING:\n"
            "    import strawberry.types\n"
            "def handler():\n"
            "    from starlette.requests import Request\n"
            "    return Request\n"
        )
        # when
        found = violations([module], lambda top: top not in OUTER_LAYERS, root=tmp_path)
        # then
        assert imports_of(module, root=tmp_path) == {"typing", "services", "strawberry.types", "starlette.requests"}
        assert found == ["services/leaky.py imports starlette.requests", "services/leaky.py imports strawberry.types"]


class TestLayers:
    def test_services_and_models_import_no_outer_layer(self) -> None:
        files = sources("services") + sources("models")
        assert violations(files, lambda top: top not in OUTER_LAYERS) == []

    def test_models_import_only_tortoise_and_the_standard_library(self) -> None:
        assert violations(sources("models"), lambda top: top in MODELS_MAY_IMPORT) == []

    def test_infra_knows_no_domain_and_no_outer_layer(self) -> None:
        assert sources("infra"), "the walker found no infra package"
        assert violations(sources("infra"), lambda top: top not in OUTER_LAYERS | DOMAIN) == []

    def test_schema_imports_neither_workers_nor_web_nor_server(self) -> None:
        assert violations(sources("schema"), lambda top: top not in {"workers", "web", "server"}) == []

    def test_workers_import_neither_schema_nor_web_nor_server(self) -> None:
        assert violations(sources("workers"), lambda top: top not in {"schema", "web", "server"}) == []

    def test_web_imports_neither_workers_nor_server(self) -> None:
        assert violations(sources("web"), lambda top: top not in {"workers", "server", "cli"}) == []


MUTABLE = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
MUTABLE_CALLS = {"list", "dict", "set", "deque", "defaultdict", "WeakSet"}


def module_state(path: Path) -> list[str]:
    """Module-level containers and `global` rebinding: state shared by every caller of the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [f"global {', '.join(node.names)}" for node in ast.walk(tree) if isinstance(node, ast.Global)]
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            value = node.value
            called = ast.unparse(value.func).rpartition(".")[2] if isinstance(value, ast.Call) else None
            if isinstance(value, MUTABLE) or called in MUTABLE_CALLS:
                found.append(ast.unparse(node).split("=")[0].strip())
    return found


class TestPorts:
    """The event bus is a port passed in by the caller, not a registry a module keeps."""

    def test_the_walker_sees_module_state(self, tmp_path: Path) -> None:
        module = tmp_path / "registry.py"
        module.write_text("_buses: list[int] = []\nNAMES = ('a',)\ndef install(b):\n    global _on\n    _on = b\n")
        assert module_state(module) == ["global _on", "_buses: list[int]"]

    def test_services_events_keeps_no_registry_of_buses(self) -> None:
        events = ROOT / "services" / "events.py"
        assert module_state(events) == []
        tree = ast.parse(events.read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert not functions & {"install", "uninstall"}

    def test_the_redis_adapter_lives_in_infra_and_the_port_in_services(self) -> None:
        assert not {name for name in imports_of(ROOT / "services" / "events.py") if name.split(".")[0] == "redis"}
        assert "redis.asyncio" in imports_of(ROOT / "infra" / "event_bus.py")


class TestTests:
    def test_test_modules_share_code_through_tests_support_only(self) -> None:
        # A test module imported by another runs its tests twice and hides what the suite shares.
        modules = [p for p in sources("tests") if "support" not in p.parts and p.name != "conftest.py"]
        found = [
            f"{module_name(path)} imports {name}"
            for path in modules
            for name in imports_of(path)
            if (name.startswith("tests.") and not name.startswith("tests.support")) or name == "tests.conftest"
        ]
        assert found == []
