"""Which sources are in force: the one answer, used by the definitions
(``fin_assets/definitions.py``), the metrics exporter, the demo and ``fin-assets simulator
--declared-sources``.

- ``FIN_PROVIDER``, ``FIN_SYMBOLS`` or ``FIN_API_BASE_URL`` set: the one source those variables
  describe (the shorthand, under today's names: ``raw/bars``, table ``core_bars``, pool
  ``provider_<FIN_PROVIDER>``), declared through the same path as a YAML file;
- otherwise every ``<name>/defs.yaml`` under ``FIN_SOURCES_DIR``, or under ``fin_assets/defs/``
  (the default deployment: ``us_equities`` on XNYS and ``crypto`` 24/7).

``FIN_QUOTA_*`` and ``FIN_FRESHNESS_*`` are every source's defaults; a source's YAML may set
its own. A variable that would be read and then do nothing is refused here, naming it and what
to do instead: ``FIN_CALENDAR`` or ``FIN_API_KEY`` without the shorthand (unless a source names
``FIN_API_KEY`` as its ``api_key_env``), ``FIN_SOURCES_DIR`` with the shorthand, and a quota or
freshness default that every source overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from fin_assets.lib.settings import API_KEY_VARIABLE, SHORTHAND_VARIABLES, Settings
from fin_assets.lib.sources import Source
from resources.calendars import TWENTY_FOUR_SEVEN
from resources.errors import InvalidInputError

DEFS_DIR = Path(__file__).resolve().parents[1] / "defs"


def sources_in_force(env: Mapping[str, str], settings: Settings | None = None) -> list[Source]:
    """The deployment's sources for an environment; a setting that would be ignored fails."""
    from fin_assets.lib.components import load_source_files, resolve_source

    settings = settings or Settings.from_env(env)
    shorthand = [name for name in SHORTHAND_VARIABLES if env.get(name)]
    if shorthand:
        if env.get("FIN_SOURCES_DIR"):
            raise InvalidInputError(
                f"FIN_SOURCES_DIR and {', '.join(shorthand)} are both set: the FIN_* variables "
                "describe the deployment's one source, FIN_SOURCES_DIR its declared sources; "
                "unset one of them"
            )
        attributes = {
            "name": "default",
            "provider": settings.provider,
            "symbols": list(settings.symbols),
            "calendar": settings.calendar,
            "base_url": settings.base_url,
            "api_key_env": API_KEY_VARIABLE,
        }
        source = resolve_source(
            attributes, settings, origin="the FIN_* variables", where="the FIN_* variables"
        )
        # The shorthand keeps today's names (raw/bars, core_bars ...): it has no name.
        return [replace(source, name=None)]
    directory = settings.sources_dir or DEFS_DIR
    label = f"FIN_SOURCES_DIR={directory}" if settings.sources_dir else str(directory)
    sources = load_source_files(directory, settings, label=label)
    _refuse_unread(env, sources, label)
    return sources


def _refuse_unread(env: Mapping[str, str], sources: list[Source], where: str) -> None:
    """Refuse a variable the declared sources would never read."""
    if env.get("FIN_CALENDAR"):
        raise InvalidInputError(
            "FIN_CALENDAR is set, but it is the calendar of the one source of FIN_PROVIDER/"
            f"FIN_SYMBOLS/FIN_API_BASE_URL, and the sources in force are declared in {where}: "
            "set `calendar:` in a source's defs.yaml, or unset FIN_CALENDAR"
        )
    if env.get(API_KEY_VARIABLE) and not any(s.api_key_env == API_KEY_VARIABLE for s in sources):
        raise InvalidInputError(
            f"{API_KEY_VARIABLE} is set but no source in force reads it (sources declared in "
            f"{where}): name the variable holding a source's key in its defs.yaml "
            f"(`api_key_env: {API_KEY_VARIABLE}`), or unset {API_KEY_VARIABLE}"
        )
    from fin_assets.lib.components import FRESHNESS_DEFAULTS, QUOTA_DEFAULTS

    overridden_by = {name: "`quota:`" for name in QUOTA_DEFAULTS} | {
        name: f"`freshness.{field}`" for field, name in FRESHNESS_DEFAULTS.items()
    }
    for name, field in overridden_by.items():
        if env.get(name) and all(name in source.overrides for source in sources):
            raise InvalidInputError(
                f"{name} is set, but every source in force sets {field} in its defs.yaml "
                f"({where}), so it would change nothing: unset it, or remove {field} from the "
                "sources it should apply to"
            )


def markets_of(sources: list[Source]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{source: (calendar, symbols)}``: what a simulator must serve for ``sources``."""
    return {source.label: (source.calendar, source.symbols) for source in sources}


def declared_markets(
    env: Mapping[str, str] | None = None,
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The markets of the sources in force (``os.environ`` by default)."""
    import os

    return markets_of(sources_in_force(os.environ if env is None else env))


def simulator_calendar_args(markets: dict[str, tuple[str, tuple[str, ...]]]) -> list[str]:
    """``--calendar NAME:SYM,...`` for every source on an exchange calendar."""
    return [
        f"--calendar={calendar}:{','.join(symbols)}"
        for calendar, symbols in markets.values()
        if calendar != TWENTY_FOUR_SEVEN
    ]
