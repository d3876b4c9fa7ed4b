"""Prometheus metrics, free of Dagster: the catalog of what the exporter serves, how a reading
becomes metric families, and the readers that need no Dagster (quota store, cgroups)."""
