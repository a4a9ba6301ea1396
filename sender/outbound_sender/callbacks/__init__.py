"""Delivery callbacks: every status change of an organisation's messages POSTed, signed, to the
URLs it registered through the API, from a durable outbox in PostgreSQL (docs/callbacks.md)."""
