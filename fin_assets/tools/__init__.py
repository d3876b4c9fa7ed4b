"""The processes that run beside the code location, never loaded by it: the ``fin-assets``
command (``cli``), the demo, the in-process backfill, the Prometheus exporter (``metrics``) and
the Celery worker app."""
