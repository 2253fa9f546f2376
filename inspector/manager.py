"""Building the plugin manager, and the typed facade the rest of the core uses.

:func:`get_plugin_manager` registers, in this order: the hook specifications, the
built-in plugins (listed by kind in the ``plugins`` package), the plugins named in
``GRAPHINSPECT_PLUGINS`` (comma-separated module names), then every entry point of the
group ``graphinspect`` (unless ``GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD`` is set), and
finally checks that every hook implementation matches a specification. Asked for some
kinds only (``builtin_kinds``), it registers only those built-ins: the overview of
``graphinspect --help`` needs the subcommands alone, and so imports neither the loaders
nor numpy.

A third-party plugin that fails to import is named in a one-line warning on stderr and
skipped; the failure is kept in :attr:`Plugins.failures` for ``graphinspect plugins``.

Core code never spells ``pm.hook...``: it asks :class:`Plugins` for loaders, reporters,
subcommands and transforms, and loads models through :meth:`Plugins.load_model`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from inspector import PROJECT_NAME, __version__, hookspecs
from inspector.errors import InputError, UsageError
from inspector.records import Check, ModelLoader, Reporter, Subcommand

if TYPE_CHECKING:
    from inspector.ir import Model
    from inspector.transforms import Transform

ENTRY_POINT_GROUP = PROJECT_NAME
DISABLE_AUTOLOAD_ENV = "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "GRAPHINSPECT_PLUGINS"
SNIFF_BYTES = 4096


@dataclass(frozen=True, slots=True)
class PluginOrigin:
    """Where a registered plugin came from: "builtin", "env" or "entry point"."""

    name: str
    source: str
    distribution: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """A plugin that could not be loaded, and why (one line)."""

    name: str
    source: str
    distribution: str | None
    error: str


@dataclass
class _Registry:
    origins: dict[str, PluginOrigin] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


def get_plugin_manager(
    autoload: bool | None = None, warn=None, builtin_kinds: Iterable[str] | None = None
) -> "Plugins":
    """Build the plugin manager and return it wrapped in the :class:`Plugins` facade.

    ``autoload`` overrides the ``GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD`` switch; ``warn``
    receives one line per plugin that failed to load (default: print to stderr);
    ``builtin_kinds`` (``"commands"``, ``"loaders"``, ...) limits the built-in plugins
    registered to those kinds (default: all). Third-party plugins are always registered.
    """
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if warn is None:
        warn = _warn_stderr
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = _Registry()
    for module_name in builtin_plugins(builtin_kinds):
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        registry.origins[module_name] = PluginOrigin(module_name, "builtin", PROJECT_NAME, __version__)
    for module_name in _split_names(os.environ.get(EXTRA_PLUGINS_ENV, "")):
        if pm.has_plugin(module_name):
            continue
        try:
            _register_checked(pm, importlib.import_module(module_name), module_name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tool
            _record_failure(registry, warn, module_name, "env", None, exc)
            continue
        registry.origins[module_name] = PluginOrigin(module_name, "env")
    if autoload:
        _load_entry_points(pm, registry, warn)
    pm.check_pending()
    return Plugins(pm, registry, warn)


def builtin_plugins(kinds: Iterable[str] | None = None) -> tuple[str, ...]:
    """Module names of the built-in plugins, in registration order (the map and the lists
    are in the ``plugins`` package); only those of ``kinds`` when given."""
    package = importlib.import_module("plugins")
    if kinds is None:
        return package.BUILTIN_PLUGINS
    return tuple(name for name in package.BUILTIN_PLUGINS if name.split(".")[1] in set(kinds))


def _load_entry_points(pm: pluggy.PluginManager, registry: _Registry, warn) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.has_plugin(entry_point.name) or pm.is_blocked(entry_point.name):
            continue
        dist = getattr(entry_point, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        dist_version = dist.version if dist is not None else None
        try:
            plugin = entry_point.load()
            if pm.is_registered(plugin):
                continue  # named in GRAPHINSPECT_PLUGINS too (a plugin under development)
            _register_checked(pm, plugin, entry_point.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tool
            _record_failure(registry, warn, entry_point.name, "entry point", dist_name, exc)
            continue
        registry.origins[entry_point.name] = PluginOrigin(entry_point.name, "entry point", dist_name, dist_version)


def _register_checked(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register a third-party plugin, or undo it when one of its hook implementations
    matches no specification (a misspelt ``graphinspect_reporter``): that plugin is then
    reported as failed instead of stopping every command at ``check_pending``."""
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        pm.unregister(plugin, name=name)
        raise


def _record_failure(registry: _Registry, warn, name: str, source: str, dist: str | None, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    registry.failures.append(PluginFailure(name, source, dist, error))
    where = f" (from {dist})" if dist else ""
    warn(f"plugin {name!r}{where} failed to load and was skipped: {error}")


def _warn_stderr(message: str) -> None:
    print(f"graphinspect: warning: {message}", file=sys.stderr)


def _split_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


class Plugins:
    """The typed facade over the plugin manager that the core and commands use.

    Each method calls the hook's implementations itself, every time it is asked.
    Contributions come back in registration order (built-ins in the order the
    ``plugins`` package lists them, then ``GRAPHINSPECT_PLUGINS``, then entry points,
    then :meth:`register`), which is not pluggy's own calling order (last registered
    first); an implementation marked ``tryfirst`` comes before all others, ``trylast``
    after. Two contributions to one hook under the same name (a reporter: the same name
    for an overlapping schema) cannot both be used: the first in that order wins, and
    the other is skipped with one warning naming both plugins. A plugin whose hook
    raises, or returns something other than the hook's record type, is skipped with
    one warning naming it; the others go on. Each warning is given once.
    """

    def __init__(self, pm: pluggy.PluginManager, registry: _Registry | None = None, warn=None) -> None:
        self.pm = pm
        self._registry = registry or _Registry()
        self._warn = warn or _warn_stderr
        self._warned: set[str] = set()

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register one more plugin (a module or object with hook implementations)."""
        self.pm.register(plugin, name=name)
        self.pm.check_pending()

    # ----------------------------------------------------------------- contributions

    def loaders(self) -> list["ModelLoader"]:
        """Every loader, highest priority first (registration order among equals)."""
        found = self._collect("graphinspect_loaders", "loader", ModelLoader, lambda loader: loader.name)
        return sorted(found, key=lambda loader: -loader.priority)

    def subcommands(self) -> list["Subcommand"]:
        """Every command, in registration order (the order of ``--help``)."""
        return self._collect("graphinspect_subcommands", "command", Subcommand, lambda command: command.name)

    def reporters(self) -> list["Reporter"]:
        """Every reporter, in registration order."""
        return self._collect(
            "graphinspect_reporters", "reporter", Reporter, lambda reporter: reporter.name, _schemas_overlap
        )

    def transforms(self) -> list["Transform"]:
        """Every transform, in the order they are tried (``order``, then registration)."""
        from inspector.transforms import Transform

        found = self._collect("graphinspect_transforms", "transform", Transform, lambda transform: transform.name)
        return sorted(found, key=lambda transform: transform.order)

    def checks(self) -> list["Check"]:
        """Every check, in registration order (the order of their findings)."""
        return self._collect("graphinspect_checks", "check", Check, lambda check: check.name)

    def _collect(self, hook_name: str, what: str, record_type: type, key, clash=None) -> list[Any]:
        """The ``record_type`` records every plugin returns from ``hook_name``, in
        registration order, without duplicates (see the class docstring)."""
        # By registered name: pluggy accepts plugin objects that cannot be hashed.
        order = {name: position for position, (name, _) in enumerate(self.pm.list_name_plugin())}
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        impls = sorted(
            impls, key=lambda impl: (not impl.tryfirst, impl.trylast, order.get(impl.plugin_name, len(order)))
        )
        kept: list[tuple[str, Any]] = []
        for impl in impls:
            try:
                records = list(impl.function() or ())
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tool
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self._warn_once(f"plugin {impl.plugin_name!r}: {hook_name} raised {error}; its {what}s are skipped")
                continue
            wrong = next((record for record in records if not isinstance(record, record_type)), None)
            if wrong is not None:
                self._warn_once(
                    f"plugin {impl.plugin_name!r}: {hook_name} returned a {type(wrong).__name__}, "
                    f"not a {record_type.__name__}; its {what}s are skipped"
                )
                continue
            for record in records:
                earlier = next(
                    (
                        owner
                        for owner, other in kept
                        if key(other) == key(record) and (clash is None or clash(other, record))
                    ),
                    None,
                )
                if earlier is not None:
                    if earlier == impl.plugin_name:
                        self._warn_once(
                            f"plugin {earlier!r} defines the {what} {key(record)!r} twice; the second is ignored"
                        )
                    else:
                        self._warn_once(
                            f"plugins {earlier!r} and {impl.plugin_name!r} both define the {what} {key(record)!r}; "
                            f"the one of {impl.plugin_name!r} is ignored"
                        )
                    continue
                kept.append((impl.plugin_name, record))
        return [record for _, record in kept]

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._warn(message)

    def reporter(self, name: str, schema: str) -> "Reporter":
        """The reporter called ``name`` that understands ``schema``."""
        for reporter in self.reporters():
            if reporter.name == name and reporter.renders(schema):
                return reporter
        raise UsageError(f"no reporter {name!r} renders {schema} documents")

    # ----------------------------------------------------------------- loading

    def load_model(self, path: str | os.PathLike) -> "Model":
        """Identify ``path`` by content and load it with the first loader that accepts it.

        Raises :class:`InputError` when the file is missing, not a regular file, empty,
        of no known format, or when the chosen loader cannot read it.
        """
        loaders = self.loaders()
        formats = sorted({fmt for loader in loaders for fmt in loader.formats})
        return load_with(path, loaders, f"unknown model format (graphinspect reads: {', '.join(formats)})")

    def load_pair(self, source: str | os.PathLike, target: str | os.PathLike) -> tuple["Model", "Model"]:
        """Load a PyTorch model and its ONNX export. Given the other way round (the ONNX
        file first), they are swapped, with a note on stderr: the order is easy to get
        wrong and never ambiguous."""
        source_model = self.load_model(source)
        target_model = self.load_model(target)
        if source_model.format == "onnx" and target_model.format != "onnx":
            from inspector.cli import escape

            print(
                f"graphinspect: note: {escape(str(source))} is the ONNX file; comparing it as the target",
                file=sys.stderr,
            )
            return target_model, source_model
        return source_model, target_model

    # ----------------------------------------------------------------- introspection

    @property
    def failures(self) -> list[PluginFailure]:
        return list(self._registry.failures)

    def describe(self) -> list[dict[str, Any]]:
        """One record per registered plugin: name, source, distribution, version, hooks."""
        records = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            origin = self._registry.origins.get(name, PluginOrigin(name, "registered"))
            callers = self.pm.get_hookcallers(plugin) or []
            records.append(
                {
                    "name": name,
                    "source": origin.source,
                    "distribution": origin.distribution,
                    "version": origin.version,
                    "hooks": sorted(caller.name for caller in callers),
                    "status": "loaded",
                }
            )
        for failure in self._registry.failures:
            records.append(
                {
                    "name": failure.name,
                    "source": failure.source,
                    "distribution": failure.distribution,
                    "version": None,
                    "hooks": [],
                    "status": f"failed: {failure.error}",
                }
            )
        return records


def _schemas_overlap(first: "Reporter", second: "Reporter") -> bool:
    """Whether two reporters render some schema in common (patterns compared both ways)."""
    import fnmatch

    return any(
        a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a) for a in first.schemas for b in second.schemas
    )


def load_with(path: str | os.PathLike, loaders: Iterable["ModelLoader"], unknown: str) -> "Model":
    """Load ``path`` with the first of ``loaders`` whose ``sniff`` accepts it.

    Raises :class:`InputError` for a missing, unreachable, non-regular or empty file, and
    with the problem ``unknown`` when no loader accepts it. The load is announced to the
    crash supervisor (:func:`inspector.isolation.reading`): a crash of native code while
    the loader runs is reported as this file's problem.
    """
    from inspector.isolation import reading

    path = Path(path)
    head = _read_head(path)
    for loader in loaders:
        try:
            accepted = loader.sniff(path, head)
        except Exception:  # noqa: BLE001 - a sniffer that trips is a "no"
            accepted = False
        if accepted:
            with reading(path, f"reading it ({loader.name} loader)"):
                return loader.load(path)
    raise InputError(path, unknown)


def _read_head(path: Path) -> bytes:
    import errno
    import stat

    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise InputError(path, "no such file") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise InputError(path, "file name too long") from None
        if exc.errno == errno.EACCES:
            raise InputError(
                path, "cannot be reached: permission denied (a folder on the way cannot be entered)"
            ) from None
        raise InputError(path, f"cannot be reached: {(exc.strerror or str(exc)).lower()}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(path, "is a directory, not a model file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(path, "is not a regular file")
    try:
        with path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if not head:
        raise InputError(path, "is empty")
    return head
