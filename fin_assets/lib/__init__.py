"""The code location's code: the ``MarketDataSource`` component type and the builders of what a
source contributes (partitions, assets, checks, jobs, schedules, sensors, freshness, alerts).
Its instances are the YAML files under ``fin_assets/defs/``; ``fin_assets/definitions.py`` binds
them with what every source shares."""
