"""Load typer's Rich formatting of help and errors (`typer.rich_utils`) and Rich's
drawing of tracebacks (`rich.traceback`) when they are used, not at every start.

typer 0.16 imports `typer.rich_utils` as it starts, and with it `rich.markdown` and
`markdown_it`: about 0.04 s of every command (warm; more with a cold cache) for what only
`--help` and usage errors need. `install()` puts a stand-in under that name
before typer is imported. Whatever typer asks of it loads the real module, which then
answers; the one thing typer asks for as it starts, a console for pretty tracebacks, is
handed out as a console made on its first use. typer also takes `rich.traceback.Traceback`
as it starts (with pygments, about 0.03 s more); that name is handed out as one looked up
when an exception is drawn. Nothing here changes what typer prints.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

NAME = "typer.rich_utils"
TRACEBACK = "rich.traceback"


class _Later:
    """A console made by the real `_get_rich_console(**kwargs)` on its first use."""

    def __init__(self, stand_in: _StandIn, kwargs: dict[str, Any]) -> None:
        self._stand_in, self._kwargs = stand_in, kwargs
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            self._console = self._stand_in.real()._get_rich_console(**self._kwargs)
        return getattr(self._console, name)


class _StandIn(types.ModuleType):
    """Stands in for a module (`typer.rich_utils`) until something of it is used."""

    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(spec.name)
        self._spec = spec
        self._real: types.ModuleType | None = None

    def real(self) -> types.ModuleType:
        """The real module, loaded on the first call."""
        if self._real is None:
            name = self._spec.name
            module = importlib.util.module_from_spec(self._spec)
            assert self._spec.loader is not None
            sys.modules[name] = module
            try:
                self._spec.loader.exec_module(module)
            except BaseException:
                sys.modules[name] = self
                raise
            self._real = module
            top, _, last = name.rpartition(".")
            parent = sys.modules.get(top)
            if parent is not None:
                setattr(parent, last, module)
        return self._real

    def _get_rich_console(self, **kwargs: Any) -> Any:
        if self._real is not None:
            return self._real._get_rich_console(**kwargs)
        return _Later(self, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and self._real is None:  # the import system probing
            raise AttributeError(name)
        return getattr(self.real(), name)


class _LaterName:
    """A name of a stand-in module, looked up in the real one on its first use: typer
    takes `rich.traceback.Traceback` as it starts, to draw an uncaught exception."""

    def __init__(self, stand_in: _StandIn, name: str) -> None:
        self._stand_in, self._name = stand_in, name

    def _real(self) -> Any:
        return getattr(self._stand_in.real(), self._name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real()(*args, **kwargs)


class _LaterModule(_StandIn):
    """Stands in for a module (`rich.traceback`, with pygments) whose names are taken at
    import but used only later, if ever."""

    def __getattr__(self, name: str) -> Any:
        if self._real is not None:
            return getattr(self._real, name)
        if name.startswith("__"):  # the import system probing
            raise AttributeError(name)
        return _LaterName(self, name)


def _stand_in(name: str, kind: type[_StandIn]) -> None:
    top_name = name.rpartition(".")[0]
    top = importlib.util.find_spec(top_name)
    if top is None or not top.submodule_search_locations:
        return
    spec = importlib.machinery.PathFinder.find_spec(name, list(top.submodule_search_locations))
    if spec is None or spec.loader is None:
        return
    sys.modules[name] = kind(spec)


def install() -> None:
    """Put the stand-in in place; does nothing once typer is imported or where the module
    is not found (another typer: it is then imported as usual)."""
    if NAME in sys.modules or "typer" in sys.modules:
        return
    _stand_in(NAME, _StandIn)
    if TRACEBACK not in sys.modules:
        _stand_in(TRACEBACK, _LaterModule)
