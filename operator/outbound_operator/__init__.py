"""The outbound-messaging operator (kopf): ChannelProvider and QuotaPolicy into workloads and runtime control.

Layers (handlers stay thin):
    handlers/  kopf entry points, one module per resource   -> reconcile/, kube, db
    reconcile/ pure functions: spec + observations -> desired objects, rows, decisions, conditions
    kube       the only module that calls the Kubernetes API
    db         the only module that runs SQL (named queries in sql/*.sql)
"""
