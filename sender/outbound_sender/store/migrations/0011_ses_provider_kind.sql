-- Amazon SES joins the providers a ChannelProvider may name: provider_control.kind accepts it.
-- The list is the provider registry's (providers/registry.py), in its order; a test holds them equal.

ALTER TABLE provider_control DROP CONSTRAINT provider_control_kind_check;
ALTER TABLE provider_control ADD CONSTRAINT provider_control_kind_check
    CHECK (kind IN ('twilio', 'sendgrid', 'whatsapp', 'vonage', 'ses', 'sandbox'));
