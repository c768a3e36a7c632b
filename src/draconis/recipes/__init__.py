"""Recipe libraries and how a recipe is chosen.

A **library** is a module (listed in :data:`LIBRARY_MODULES`) with
``recipe_tags`` (frozenset), ``RECIPES`` (name -> function) and ``_default``
(a recipe function), or a :class:`Library` object listed in such a module's
``LIBRARIES``.  A recipe is a function of one argument, the primitive caller
``p``: ``p.prepare(); p.addDQ(add_illum_mask=False); ...``; every call accepts
``stream=``, ``instream=``, ``outstream=``.

The library is chosen from the tags of the FIRST input: the libraries whose
``recipe_tags`` are a subset of the tags, largest overlap wins, a tie is an
error.  ``-r NAME`` names a recipe of that library, a user recipe
(``path/file.py:func``, ``path/file.func``, ``package.module.func``) or a
single registered primitive run alone.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable
from types import ModuleType

from ..errors import RecipeError

RecipeFunc = Callable[[object], None]

#: Explicit list of library modules (no scanning); add new libraries here.
LIBRARY_MODULES: tuple[str, ...] = (
    "calibration",
    "image_f2",
    "image_niri",
    "image_gnirs",
    "image_gsaoi",
)


@dataclasses.dataclass(frozen=True)
class Library:
    """A set of recipes selected by ``recipe_tags``."""

    name: str
    recipe_tags: frozenset[str]
    recipes: dict[str, RecipeFunc]
    default: str
    mode: str = "sq"

    def get(self, name: str) -> RecipeFunc | None:
        """The recipe ``name`` (``_default``: the library's default), or None."""
        if name == "_default":
            return self.recipes[self.default]
        return self.recipes.get(name)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The recipe chosen for a run."""

    name: str
    func: RecipeFunc
    library: str


def _from_module(module: ModuleType) -> list[Library]:
    if hasattr(module, "LIBRARIES"):
        return list(module.LIBRARIES)
    recipes = dict(module.RECIPES)
    default = module._default
    default_name = next((n for n, f in recipes.items() if f is default), getattr(default, "__name__", "_default"))
    recipes.setdefault(default_name, default)
    return [Library(module.__name__.rsplit(".", 1)[-1], frozenset(module.recipe_tags), recipes, default_name,
                    getattr(module, "mode", "sq"))]


def libraries(mode: str = "sq") -> list[Library]:
    """Every library of ``mode``."""
    out: list[Library] = []
    for name in LIBRARY_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        out.extend(lib for lib in _from_module(module) if lib.mode == mode)
    return out


def select_library(tags: Iterable[str], mode: str = "sq", *, filename: str = "") -> Library:
    """The library for a frame with ``tags`` (largest subset of the tags; a tie is an error)."""
    tags = set(tags)
    candidates = [lib for lib in libraries(mode) if lib.recipe_tags <= tags]
    if not candidates:
        listed = ", ".join(sorted(tags))
        raise RecipeError(f"{filename or 'input'}: no {mode} recipe library applies to tags {{{listed}}}")
    best = max(len(lib.recipe_tags) for lib in candidates)
    winners = [lib for lib in candidates if len(lib.recipe_tags) == best]
    if len(winners) > 1:
        raise RecipeError(f"{filename or 'input'}: ambiguous recipe libraries "
                          f"{', '.join(lib.name for lib in winners)} for tags {{{', '.join(sorted(tags))}}}")
    return winners[0]


def find_recipe(name: str, tags: Iterable[str], mode: str = "sq", *, filename: str = "") -> Recipe:
    """Resolve ``-r name`` for a first input with ``tags``.

    Order: a recipe of the selected library, a user recipe file or module,
    a registered primitive run on its own.
    """
    name = name or "_default"
    if _looks_like_user_recipe(name):
        return _user_recipe(name)
    no_library: RecipeError | None = None
    try:
        library: Library | None = select_library(tags, mode, filename=filename)
    except RecipeError as err:
        library, no_library = None, err
    if library is not None:
        func = library.get(name)
        if func is not None:
            return Recipe(library.default if name == "_default" else name, func, library.name)
    from ..primitives.registry import PRIMITIVES, load_all

    load_all()
    if name in PRIMITIVES:
        return Recipe(name, _single_primitive(name), "primitive")
    if library is None:
        assert no_library is not None
        raise no_library
    known = ", ".join(sorted(library.recipes))
    raise RecipeError(f"no recipe or primitive named {name!r} for {filename or 'input'} "
                      f"(library {library.name} has: {known})")


def _single_primitive(name: str) -> RecipeFunc:
    def run_alone(p) -> None:
        getattr(p, name)()

    run_alone.__name__ = name
    run_alone.__doc__ = f"The primitive {name} run alone."
    return run_alone


def _looks_like_user_recipe(name: str) -> bool:
    return ":" in name or "/" in name or os.sep in name or "." in name


def _user_recipe(spec: str) -> Recipe:
    if ":" in spec:
        target, func_name = spec.rsplit(":", 1)
    else:
        target, _, func_name = spec.rpartition(".")
    path = target if target.endswith(".py") else f"{target}.py"
    if os.path.isfile(path):
        module = _load_file(path)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise RecipeError(f"user recipe {spec!r}: no file {path} and no module {target}") from err
    func = getattr(module, func_name, None)
    if not callable(func):
        raise RecipeError(f"user recipe {spec!r}: {target} defines no function {func_name!r}")
    return Recipe(func_name, func, f"user:{target}")


def _load_file(path: str) -> ModuleType:
    module_name = "draconis_user_recipe_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"user recipe file {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - any error in the user's file
        raise RecipeError(f"user recipe file {path}: {type(err).__name__}: {err}") from err
    return module
