"""Delivery webhooks: signature checks (signatures.py), event parsing (events.py), recording
(store.py), the providers' handlers (endpoints.py) and the FastAPI router the HTTP API mounts
(router.py: `router(config, pool)`, one route per provider the registry lists)."""
