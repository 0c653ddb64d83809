from odoo import fields, models


class StratoWhatsappWebhookWakeup(models.Model):
    """When a webhook POST woke the processing cron, if no run has started consuming events since.

    A single row, read and written with SQL only, under the protocol described in
    ``strato.whatsapp.webhook.event._store``."""

    _name = "strato.whatsapp.webhook.wakeup"
    _description = "WhatsApp Webhook Processing Wake-up"
    _log_access = False

    requested_at = fields.Datetime(readonly=True)

    def init(self):
        self.env.cr.execute("""
            INSERT INTO strato_whatsapp_webhook_wakeup (id)
            SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM strato_whatsapp_webhook_wakeup)
        """)
