"""The layers keep to their jobs: kernels import no higher layer, primitives open no files nor probe the context."""
from __future__ import annotations

import ast
import pathlib

import draconis

SRC = pathlib.Path(draconis.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of the draconis modules ``path`` imports."""
    package = ["draconis", *path.relative_to(SRC).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("draconis")}


def test_kernels_import_only_kernels_and_errors():
    allowed = ("draconis.kernels", "draconis.errors")
    for path in sorted((SRC / "kernels").glob("*.py")):
        bad = sorted(n for n in _imports(path) if not n.startswith(allowed))
        assert not bad, f"{path.name} imports {bad}: kernels import nothing from instruments/ or above"


def test_primitives_open_no_files_and_use_only_the_context():
    opening = ("open_fits", "open_frame", "open_zarr", "Table.read", "fits.open", "getdata(")
    for path in sorted((SRC / "primitives").glob("*.py")):
        text = path.read_text()
        used = [name for name in opening if name in text]
        assert not used, f"primitives/{path.name} opens files itself ({used}): declare the parameter opens=..."
    for path in sorted(SRC.rglob("*.py")):
        assert "getattr(ctx" not in path.read_text(), f"{path}: the Context protocol names every service"


def test_primitives_import_nothing_of_the_runner():
    # what a primitive needs of the run (streams, files, the workers' memory) it asks its Context
    runner = ("draconis.reduce", "draconis.cluster", "draconis.cluster_plan", "draconis.config", "draconis.caldb",
              "draconis.commands", "draconis.cli", "draconis.runrecord", "draconis.report")
    for path in sorted((SRC / "primitives").glob("*.py")):
        bad = sorted(n for n in _imports(path) if n in runner or n.startswith(tuple(f"{r}." for r in runner)))
        assert not bad, f"primitives/{path.name} imports {bad}: ask the Context (primitives/registry.py) instead"


def test_primitives_are_annotated_with_their_real_parameter_and_context_types():
    import typing

    from draconis.frame import Frame
    from draconis.parameters import Params
    from draconis.primitives.registry import PRIMITIVES, Context, load_all

    load_all()
    for name, spec in PRIMITIVES.items():
        hints = typing.get_type_hints(spec.func)
        assert (hints.get("frames"), hints.get("p"), hints.get("ctx"), hints.get("return")) == (
            list[Frame], Params, Context, list[Frame]), name
