"""Load typer's Rich formatting of help and errors (`typer.rich_utils`) when it is used,
not at every start.

typer 0.16 imports `typer.rich_utils` as it starts, and with it `rich.markdown` and
`markdown_it`: about 0.04 s of every command (warm; more with a cold cache) for what only
`--help` and usage errors need. `install()` puts a stand-in under that name
before typer is imported. Whatever typer asks of it loads the real module, which then
answers; the one thing typer asks for as it starts, a console for pretty tracebacks, is
handed out as a console made on its first use. Nothing here changes what typer prints.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

NAME = "typer.rich_utils"


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
    """Stands in for `typer.rich_utils` until something of it is used."""

    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(NAME)
        self._spec = spec
        self._real: types.ModuleType | None = None

    def real(self) -> types.ModuleType:
        """The real module, loaded on the first call."""
        if self._real is None:
            module = importlib.util.module_from_spec(self._spec)
            assert self._spec.loader is not None
            sys.modules[NAME] = module
            try:
                self._spec.loader.exec_module(module)
            except BaseException:
                sys.modules[NAME] = self
                raise
            self._real = module
            parent = sys.modules.get("typer")
            if parent is not None:
                parent.rich_utils = module  # type: ignore[attr-defined]
        return self._real

    def _get_rich_console(self, **kwargs: Any) -> Any:
        if self._real is not None:
            return self._real._get_rich_console(**kwargs)
        return _Later(self, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and self._real is None:  # the import system probing
            raise AttributeError(name)
        return getattr(self.real(), name)


def install() -> None:
    """Put the stand-in in place; does nothing once typer is imported or where the module
    is not found (another typer: it is then imported as usual)."""
    if NAME in sys.modules or "typer" in sys.modules:
        return
    top = importlib.util.find_spec("typer")
    if top is None or not top.submodule_search_locations:
        return
    spec = importlib.machinery.PathFinder.find_spec(NAME, list(top.submodule_search_locations))
    if spec is None or spec.loader is None:
        return
    sys.modules[NAME] = _StandIn(spec)
