"""Job types and the interface they implement: everything a plugin author needs."""

from runner_plugins.base import InvalidParams, JobContext, Plugin
from runner_plugins.registry import (
    ENTRY_POINT_GROUP,
    PluginError,
    UnknownPlugin,
    get_plugin,
    installed_plugins,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "InvalidParams",
    "JobContext",
    "Plugin",
    "PluginError",
    "UnknownPlugin",
    "get_plugin",
    "installed_plugins",
]
