"""Plug-ins: the user's own methods measured beside the built-in ones, no source edits.

A plug-in is a module that builds a layer following ``projunn_core/protocol.py`` and
registers it at import with :func:`suite.register_method` (a module-level call, or a
function the plug-in names, see below). The front ends find plug-ins two ways:

* the entry-point group :data:`ENTRY_POINT_GROUP` (``projunn_bench.methods``) of the
  installed packages: ``qr = "my_pkg.qr"`` (a module that registers at import) or
  ``qr = "my_pkg.qr:register"`` (a function called with no arguments);
* :data:`ENV` (``PROJUNN_BENCH_PLUGINS=module[,module...]``): module names on
  ``sys.path`` (``PYTHONPATH``), ``module:function`` or paths of ``.py`` files.

:func:`load_plugins` loads them (entry points first, sorted by name, then the variable's
in order); every front end calls it before it parses its options (``projunn-bench``:
:mod:`suite.cli`; asv: :mod:`suite.benchmarks`; pytest-benchmark:
``tests/test_benchmarks.py``; the ``tune`` worker processes: :func:`load_in_worker`).
A plug-in that fails to import, or to register, or registers nothing, raises
:class:`PluginError` naming it and where it came from, and the methods it had
registered are removed again. Loading is idempotent: a plug-in already loaded is not
loaded again.

>>> parse_env("qr_retraction, my.pkg:register,,")
['qr_retraction', 'my.pkg:register']
>>> [p.spec for p in load_plugins(environ={}) if p.source == ENV]
[]
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV",
    "Plugin",
    "PluginError",
    "discover",
    "load_in_worker",
    "load_plugins",
    "loaded",
    "parse_env",
    "worker_specs",
]

ENTRY_POINT_GROUP = "projunn_bench.methods"
"""The entry-point group an installed package declares its plug-ins in."""
ENV = "PROJUNN_BENCH_PLUGINS"
"""The environment variable naming plug-ins: ``module[,module...]``."""

_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


class PluginError(RuntimeError):
    """A plug-in could not be loaded; the message names it, where it came from and why."""


@dataclass(frozen=True)
class Plugin:
    """One plug-in: ``spec`` (``module``, ``module:function`` or a ``.py`` path) and
    ``source``, where it was named (``PROJUNN_BENCH_PLUGINS`` or the entry point and its
    package)."""

    spec: str
    source: str

    def describe(self) -> str:
        """``"plug-in 'qr_retraction' (from PROJUNN_BENCH_PLUGINS)"``."""
        return f"plug-in {self.spec!r} (from {self.source})"

    @property
    def key(self) -> str:
        """What makes two plug-ins the same (a file by its resolved path)."""
        if _is_path(self.spec):
            return str(Path(self.spec).expanduser().resolve())
        return self.spec


_LOADED: dict[str, Plugin] = {}


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def parse_env(value: str | None) -> list[str]:
    """The plug-in specs of a :data:`ENV` value (comma-separated, blanks dropped)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def discover(environ: Mapping[str, str] | None = None) -> list[Plugin]:
    """The plug-ins named by the installed packages' entry points and by :data:`ENV` in
    ``environ`` (default ``os.environ``), in loading order; nothing is imported."""
    from importlib.metadata import entry_points

    found: dict[tuple[str, str], Plugin] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = getattr(ep, "dist", None)
        package = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "?"
        where = f"entry point {ENTRY_POINT_GROUP}: {ep.name} = {ep.value}, package {package}"
        found.setdefault((ep.name, ep.value), Plugin(ep.value.replace(" ", ""), where))
    plugins = list(found.values())
    environ = os.environ if environ is None else environ
    plugins += [Plugin(spec, ENV) for spec in parse_env(environ.get(ENV))]
    return plugins


def loaded() -> list[Plugin]:
    """The plug-ins loaded in this process, in loading order."""
    return list(_LOADED.values())


def load_plugins(
    specs: Iterable[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "the caller",
) -> list[Plugin]:
    """Load ``specs`` (named by ``source``; default: :func:`discover`'s plug-ins) that
    are not loaded yet; returns every plug-in loaded in this process. Raises
    :class:`PluginError` at the first one that fails (those before it stay loaded)."""
    if specs is None:
        plugins = discover(environ)
    else:
        plugins = [Plugin(spec, source) for spec in specs]
    for plugin in plugins:
        if plugin.key not in _LOADED:
            _load(plugin)
            _LOADED[plugin.key] = plugin
    return loaded()


def _load(plugin: Plugin) -> None:
    """Import ``plugin`` (and call its function); on failure, undo its registrations."""
    from .measure import methods

    spec = plugin.spec
    module_name, _, attr = spec.partition(":") if not _is_path(spec) else (spec, "", "")
    if not _is_path(spec) and (
        not _MODULE.match(module_name) or (attr and not attr.isidentifier())
    ):
        raise PluginError(
            f"{plugin.describe()}: not a module name, module:function or path of a .py file"
        )
    before = _snapshot()
    calls: list[str] = []
    methods._REGISTER_HOOKS.append(calls.append)
    fresh, phase = False, "import"
    try:
        if _is_path(spec):
            module, fresh = _import_file(plugin)
        else:
            fresh = module_name not in sys.modules
            module = importlib.import_module(module_name)
        if attr:
            phase = f"{attr}()"
            target = getattr(module, attr, None)
            if not callable(target):
                raise PluginError(f"{plugin.describe()}: {module_name} has no function {attr!r}")
            target()
    except PluginError:
        _restore(before)
        raise
    except Exception as e:
        _restore(before)
        if isinstance(e, methods.RegistrationError):
            raise PluginError(f"{plugin.describe()} failed to register a method: {e}") from e
        hint = ""
        if isinstance(e, ModuleNotFoundError) and e.name == module_name.split(".")[0]:
            hint = " (is its folder on the path? e.g. PYTHONPATH=DIR)"
        raise PluginError(
            f"{plugin.describe()} failed in {phase}: {type(e).__name__}: {e}{hint}"
        ) from e
    finally:
        methods._REGISTER_HOOKS.remove(calls.append)
    if not calls and (fresh or attr):
        _restore(before)
        raise PluginError(
            f"{plugin.describe()} registered no method: call suite.register_method(...) when "
            "it is imported, or name its register function (module:function)"
        )


def _snapshot() -> tuple[dict, ...]:
    from .measure import methods

    return tuple(dict(d) for d in (methods._REGISTRY, methods._UPDATES, methods._ORIGINS))


def _restore(snapshot: tuple[dict, ...]) -> None:
    """Put the registry back as it was at ``snapshot`` (a plug-in failed half-way)."""
    from .measure import methods

    for live, saved in zip(
        (methods._REGISTRY, methods._UPDATES, methods._ORIGINS), snapshot, strict=True
    ):
        live.clear()
        live.update(saved)


def _import_file(plugin: Plugin):
    """Import the ``.py`` file ``plugin.spec`` as the module named by its stem."""
    path = Path(plugin.spec).expanduser().resolve()
    if not path.is_file():
        raise PluginError(f"{plugin.describe()}: no such file {path}")
    name = path.stem
    if not _MODULE.match(name):
        raise PluginError(f"{plugin.describe()}: {path.name} is not a module name")
    existing = sys.modules.get(name)
    if existing is not None:
        origin = getattr(existing, "__file__", None)
        if origin and Path(origin).resolve() == path:
            return existing, False
        raise PluginError(
            f"{plugin.describe()}: a module named {name!r} is already imported from {origin}"
        )
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickle look modules up there
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module, True


def worker_specs() -> tuple[list[str], list[str], list[str]]:
    """What a worker process must load to see this process's methods: the specs of the
    loaded plug-ins, the modules that registered methods outside them (a script's
    ``__main__`` is left out: a spawned worker runs it again itself), and the names of
    every plug-in method, which the worker checks it has.

    >>> plugins, modules, names = worker_specs()
    >>> plugins == [p.spec for p in loaded()]
    True
    """
    from .measure.methods import plugin_methods

    specs = [p.spec for p in _LOADED.values()]
    covered = {s.partition(":")[0] for s in specs} | {Path(s).stem for s in specs if _is_path(s)}
    origins = plugin_methods()
    modules = [
        origin
        for origin in dict.fromkeys(origins.values())
        if origin not in covered and origin not in ("__main__", "__mp_main__")
    ]
    return specs, modules, sorted(origins)


def load_in_worker(specs: Sequence[Sequence[str]]) -> None:
    """Load :func:`worker_specs` of the parent process in a worker process; a failure,
    or a method of the parent's still missing, ends the worker (status 2) with a message
    naming it."""
    plugins, modules, *rest = specs
    try:
        load_plugins(plugins, source="the parent process")
        for name in modules:
            importlib.import_module(name)
        from .measure.methods import METHODS

        missing = [name for name in (rest[0] if rest else ()) if name not in METHODS]
        if missing:
            raise PluginError(
                f"method(s) {', '.join(missing)} of the parent process are not registered in "
                "this worker: register them when their module is imported (a plug-in), not "
                "under if __name__ == '__main__'"
            )
    except Exception as e:
        print(f"projunn-bench worker: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
