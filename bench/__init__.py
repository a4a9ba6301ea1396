"""`make bench`: throughput and latency, measured side by side in one run (docs/performance.md)."""
