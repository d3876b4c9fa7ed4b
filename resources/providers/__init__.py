"""Provider adapters: how to ask one API for bars and how to read its answers.

The registry is built on first use, not at import: ``resources.simulator.adapter`` imports
``resources.providers.base``, which runs this module first, so importing the adapters here at
module level made ``import resources.simulator.adapter`` (before anything else) circular.
"""

from __future__ import annotations

import functools

from resources.errors import InvalidInputError
from resources.providers.base import ProviderAdapter


@functools.cache
def _registry() -> dict[str, type[ProviderAdapter]]:
    from resources.providers.binance import BinanceAdapter
    from resources.providers.polygon import PolygonAdapter
    from resources.simulator.adapter import SimulatorAdapter

    return {adapter.name: adapter for adapter in (SimulatorAdapter, BinanceAdapter, PolygonAdapter)}


def get_adapter(name: str) -> ProviderAdapter:
    adapters = _registry()
    try:
        return adapters[name]()
    except KeyError:
        known = ", ".join(sorted(adapters))
        raise InvalidInputError(f"unknown provider {name!r}: expected one of {known}") from None


def provider_names() -> list[str]:
    return sorted(_registry())


__all__ = ["ProviderAdapter", "get_adapter", "provider_names"]
