"""Faithful sandboxes of the three provider APIs: real HTTP servers on loopback.

`SandboxSet` builds the three apps, points their delivery webhooks at our webhook endpoints, and
gives the base URLs and credentials the provider clients need (`provider_settings()`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from outbound_sender.providers.settings import SendGridSettings, TwilioSettings, WhatsAppSettings
from outbound_sender.sandboxes import credentials
from outbound_sender.sandboxes.base import SandboxApp, SandboxConfig
from outbound_sender.sandboxes.sendgrid import SendGridSandbox
from outbound_sender.sandboxes.twilio import TwilioSandbox
from outbound_sender.sandboxes.whatsapp import WhatsAppSandbox

__all__ = ["SandboxApp", "SandboxConfig", "SandboxSet", "SendGridSandbox", "TwilioSandbox", "WhatsAppSandbox"]


@dataclass
class SandboxSet:
    twilio: TwilioSandbox = field(default_factory=TwilioSandbox)
    sendgrid: SendGridSandbox = field(default_factory=SendGridSandbox)
    whatsapp: WhatsAppSandbox = field(default_factory=WhatsAppSandbox)

    def apps(self) -> dict[str, SandboxApp]:
        return {"twilio": self.twilio, "sendgrid": self.sendgrid, "whatsapp": self.whatsapp}

    def send_webhooks_to(self, webhook_base: str | None) -> None:
        """SendGrid and WhatsApp post to account-level URLs (Twilio's comes with each message)."""
        base = webhook_base.rstrip("/") if webhook_base else None
        self.sendgrid.config.event_webhook_url = f"{base}/sendgrid/events" if base else None
        self.whatsapp.config.webhook_url = f"{base}/whatsapp" if base else None


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
