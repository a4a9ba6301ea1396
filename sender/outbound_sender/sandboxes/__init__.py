"""Faithful sandboxes of the provider APIs: real HTTP servers on loopback.

Each provider's entry in providers/registry.py names its sandbox app and the function below that
gives its client the sandbox account (base URL and credentials); `registry.sandbox_apps()` builds
the apps with their delivery webhooks pointed at our endpoints.
"""

from __future__ import annotations

from outbound_sender.providers.settings import SendGridSettings, TwilioSettings, WhatsAppSettings
from outbound_sender.sandboxes import credentials
from outbound_sender.sandboxes.base import SandboxApp, SandboxConfig
from outbound_sender.sandboxes.sendgrid import SendGridSandbox
from outbound_sender.sandboxes.twilio import TwilioSandbox
from outbound_sender.sandboxes.whatsapp import WhatsAppSandbox

__all__ = [
    "SandboxApp",
    "SandboxConfig",
    "SendGridSandbox",
    "TwilioSandbox",
    "WhatsAppSandbox",
]


def twilio_settings(base_url: str, **overrides: object) -> TwilioSettings:
    values: dict[str, object] = {
        "account_sid": credentials.TWILIO_ACCOUNT_SID,
        "auth_token": credentials.TWILIO_AUTH_TOKEN,
        "messaging_service_sid": credentials.TWILIO_MESSAGING_SERVICE_SID,
        "base_url": base_url,
    }
    return TwilioSettings.model_validate({**values, **overrides})


def sendgrid_settings(base_url: str, **overrides: object) -> SendGridSettings:
    values: dict[str, object] = {
        "api_key": credentials.SENDGRID_API_KEY,
        "from_email": credentials.SENDGRID_FROM_EMAIL,
        "base_url": base_url,
        "webhook_public_key": credentials.sendgrid_verification_key(),
    }
    return SendGridSettings.model_validate({**values, **overrides})


def whatsapp_settings(base_url: str, **overrides: object) -> WhatsAppSettings:
    values: dict[str, object] = {
        "access_token": credentials.WHATSAPP_ACCESS_TOKEN,
        "phone_number_id": credentials.WHATSAPP_PHONE_NUMBER_ID,
        "base_url": base_url,
        "app_secret": credentials.WHATSAPP_APP_SECRET,
        "verify_token": credentials.WHATSAPP_VERIFY_TOKEN,
    }
    return WhatsAppSettings.model_validate({**values, **overrides})
