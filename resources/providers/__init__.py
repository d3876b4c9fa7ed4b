"""Provider adapters: how to ask one API for bars and how to read its answers.

The registry knows the adapters of this package (``binance``, ``polygon``) and every adapter a
package declares in the ``fin_assets.providers`` entry-point group of its metadata: that is how
the project's own simulator registers itself (``pyproject.toml``:
``simulator = "resources.simulator.adapter:SimulatorAdapter"``), and how a provider kept in
another package joins without a line changed here. The registry never imports the simulator.

It is built on first use, not at import: an adapter module imports ``resources.providers.base``,
which runs this module first.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from resources.errors import InvalidInputError
from resources.providers.base import ProviderAdapter

ENTRY_POINT_GROUP = "fin_assets.providers"


@functools.cache
def _registry() -> dict[str, type[ProviderAdapter]]:
    from resources.providers.binance import BinanceAdapter
    from resources.providers.polygon import PolygonAdapter

    adapters: dict[str, type[ProviderAdapter]] = {
        adapter.name: adapter for adapter in (BinanceAdapter, PolygonAdapter)
    }
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        adapter = entry.load()
        if not (isinstance(adapter, type) and issubclass(adapter, ProviderAdapter)):
            raise InvalidInputError(
                f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}): "
                "not a ProviderAdapter subclass"
            )
        if adapter.name != entry.name:
            raise InvalidInputError(
                f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}): the adapter "
                f"names itself {adapter.name!r}; the entry point's name must be the same"
            )
        if adapter.name in adapters and adapters[adapter.name] is not adapter:
            raise InvalidInputError(
                f"provider {adapter.name!r} is registered twice ({entry.value} and "
                f"{adapters[adapter.name].__module__}.{adapters[adapter.name].__qualname__})"
            )
        adapters[adapter.name] = adapter
    return adapters


def get_adapter(name: str) -> ProviderAdapter:
    adapters = _registry()
    try:
        return adapters[name]()
    except KeyError:
        known = ", ".join(sorted(adapters))
        raise InvalidInputError(f"unknown provider {name!r}: expected one of {known}") from None


def provider_names() -> list[str]:
    return sorted(_registry())


__all__ = ["ENTRY_POINT_GROUP", "ProviderAdapter", "get_adapter", "provider_names"]
