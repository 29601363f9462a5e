"""Finding plugins: the built-ins merged with the ``runpack.plugins`` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from runner_plugins.artifact import Artifact
from runner_plugins.base import Plugin
from runner_plugins.hello_world import HelloWorld
from runner_plugins.noop import Noop
from runner_plugins.primes import Primes

ENTRY_POINT_GROUP = "runpack.plugins"
BUILTINS: tuple[type[Plugin], ...] = (Artifact, HelloWorld, Noop, Primes)


class PluginError(Exception):
    """Raised when a plugin cannot be found or an installed one is broken."""


class UnknownPlugin(PluginError, LookupError):
    """Raised when no installed plugin runs the asked job type; names the installed ones."""


def _instantiate(found: object, source: str) -> Plugin:
    plugin = found() if isinstance(found, type) else found
    if not isinstance(plugin, Plugin):
        raise PluginError(f"{source} is not a runner_plugins.Plugin")
    return plugin


@cache
def installed_plugins() -> dict[str, Plugin]:
    """Every plugin by job type: the built-ins, then the entry points (which may not clash)."""
    plugins = {cls.name: cls() for cls in BUILTINS}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        plugin = _instantiate(entry_point.load(), f"entry point {entry_point.value}")
        if plugin.name in plugins:
            raise PluginError(
                f"entry point {entry_point.value} registers {plugin.name!r}, which is taken"
            )
        plugins[plugin.name] = plugin
    return plugins


def get_plugin(job_type: str) -> Plugin:
    """The plugin for ``job_type``; raises UnknownPlugin listing what is installed."""
    plugins = installed_plugins()
    try:
        return plugins[job_type]
    except KeyError:
        raise UnknownPlugin(
            f"no plugin for job type {job_type!r}; installed: {', '.join(sorted(plugins))}"
        ) from None
