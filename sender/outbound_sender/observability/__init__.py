"""Observability beyond the process's own counters: database-derived gauges (gauges.py, refresher.py),
the metrics endpoint (exposition.py) and Sentry (sentry.py). See docs/observability.md."""
