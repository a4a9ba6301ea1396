"""The sandbox accounts' credentials: public test values, valid only against the local sandboxes.

They have the real formats (AC… SID, SG. key, numeric phone number id), so the clients and the
sandboxes exercise the same validation as with real accounts. The SendGrid webhook signing key is
derived from a fixed seed, so the sandbox (which signs) and the webhook endpoint (which verifies
with the public half) agree without sharing a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

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

VONAGE_API_KEY = "5a5a5a5a"
VONAGE_API_SECRET = "sandbox-secret-5a5a"
VONAGE_SIGNATURE_SECRET = "sandbox-signature-secret-5a5a5a5a5a5a5a5a"
VONAGE_FROM_NUMBER = "15005550006"

SES_ACCESS_KEY_ID = "ASIA" + "5A5A" * 4  # temporary credentials: the session token is required
SES_SECRET_ACCESS_KEY = "sandbox/Secret/AccessKey/5a5a5a5a5a5a5a5"
SES_SESSION_TOKEN = "sandbox-session-token-" + "5a" * 24
SES_REGION = "us-east-1"
SES_FROM_EMAIL = "noreply@sandbox.example.com"
SES_CONFIGURATION_SET = "outbound-sandbox"
SES_ACCOUNT_ID = "123456789012"
SES_SNS_TOPIC_ARN = f"arn:aws:sns:{SES_REGION}:{SES_ACCOUNT_ID}:outbound-ses-events"

_SEED = b"outbound-messaging sendgrid sandbox event webhook key"


@cache
def sendgrid_signing_key() -> ec.EllipticCurvePrivateKey:
    secret = int.from_bytes(hashlib.sha256(_SEED).digest(), "big")
    return ec.derive_private_key(secret, ec.SECP256R1())


def sendgrid_verification_key() -> str:
    """What SendGrid's settings page would show: base64 DER of the public key."""
    return sendgrid_public_key_b64(sendgrid_signing_key())


@cache
def sns_signing_key() -> rsa.RSAPrivateKey:
    """The sandbox SNS's signing key, made once per process: its certificate is served by the
    sandbox itself (SigningCertURL), so nothing needs to agree on it in advance."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def sns_certificate_pem() -> bytes:
    key = sns_signing_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.sandbox.invalid")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)
