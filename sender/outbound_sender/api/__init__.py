"""The HTTP API (the runbook's OutboundMessageService): create, fetch, list and cancel messages.

    app.py          create_app(...): the FastAPI application (message routes optional, ops routes always)
    routes.py       /v1/messages endpoints          ops.py      /healthz, /readyz, /actuator/prometheus
    schemas.py      pydantic request/response models (the published OpenAPI document)
    validation.py   pure checks: E.164 numbers, e-mail addresses, templates, body limits per channel
    auth.py         API keys (obk_<id>_<secret>, stored as SHA-256) and their short-lived cache
    ratelimit.py    per-organisation GCRA limit, in process or shared through Redis
    idempotency.py  request hashes and batch keys    problems.py  the error body every 4xx/5xx uses
    middleware.py   correlation ids, request logs and request metrics (pure ASGI)

Kept import-light: config.py imports api.settings.
"""
