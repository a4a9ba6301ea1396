"""The sandbox accounts' credentials: public test values, valid only against the local sandboxes.

They have the real formats (AC… SID, SG. key, numeric phone number id), so the clients and the
sandboxes exercise the same validation as with real accounts. The SendGrid webhook signing key is
derived from a fixed seed, so the sandbox (which signs) and the webhook endpoint (which verifies
with the public half) agree without sharing a file.
"""

from __future__ import annotations

import hashlib
from functools import cache

from cryptography.hazmat.primitives.asymmetric import ec

from outbound_sender.webhooks.signatures import sendgrid_public_key_b64

TWILIO_ACCOUNT_SID = "AC" + "5a" * 16
TWILIO_AUTH_TOKEN = "5a" * 16
TWILIO_MESSAGING_SERVICE_SID = "MG" + "5a" * 16
TWILIO_FROM_NUMBER = "+15005550006"

SENDGRID_API_KEY = "SG.sandbox-key-0000000000.sandbox-secret-00000000000000000000000000000"
SENDGRID_FROM_EMAIL = "noreply@sandbox.example.com"

WHATSAPP_ACCESS_TOKEN = "EAAsandbox0000000000000000000000000000000000"
WHATSAPP_PHONE_NUMBER_ID = "106540352242922"
WHATSAPP_DISPLAY_NUMBER = "15550783881"
WHATSAPP_APP_SECRET = "sandbox-app-secret-0000000000000000"
WHATSAPP_VERIFY_TOKEN = "sandbox-verify-token"

_SEED = b"outbound-messaging sendgrid sandbox event webhook key"


@cache
def sendgrid_signing_key() -> ec.EllipticCurvePrivateKey:
    secret = int.from_bytes(hashlib.sha256(_SEED).digest(), "big")
    return ec.derive_private_key(secret, ec.SECP256R1())


def sendgrid_verification_key() -> str:
    """What SendGrid's settings page would show: base64 DER of the public key."""
    return sendgrid_public_key_b64(sendgrid_signing_key())
