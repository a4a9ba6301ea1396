"""What the providers' webhook signature checks share. Each scheme (sign, for the sandboxes and the
tests, and verify, for the handlers) is in its provider's webhooks/<provider>.py.

Every verify function returns False, never raises, on malformed input: callers fail closed. A
signature is ASCII by construction (base64 or hex); headers reach us as latin-1 text, so anything
else is refused before hmac.compare_digest, which raises TypeError on non-ASCII text.
"""

from __future__ import annotations

import hmac


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures; False (not TypeError) when `given` is not ASCII."""
    return given.isascii() and hmac.compare_digest(expected.encode(), given.encode())
