"""Faithful sandboxes of the provider APIs: real HTTP servers on loopback.

base.py is what every sandbox shares; each provider's sandbox (sandboxes/<provider>.py) holds its
fake API, its sandbox account's test credentials and `account(base_url)`, the settings its client
uses against it. A provider's entry in providers/registry.py names both; `registry.sandbox_apps()`
builds the apps with their delivery webhooks pointed at our endpoints. generic.py is the sandbox of
the generic provider (every channel, no account).
"""
