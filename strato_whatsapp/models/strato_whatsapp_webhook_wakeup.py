from odoo import fields, models


class StratoWhatsappWebhookWakeup(models.Model):
    """Whether a webhook POST has woken the processing cron since its run last started consuming events.

    A single row, read and written with SQL only, under the protocol described in
    ``strato.whatsapp.webhook.event._store``."""

    _name = "strato.whatsapp.webhook.wakeup"
    _description = "WhatsApp Webhook Processing Wake-up"
    _log_access = False

    requested = fields.Boolean(readonly=True)

    def init(self):
        self.env.cr.execute("""
            INSERT INTO strato_whatsapp_webhook_wakeup (id, requested)
            SELECT 1, false WHERE NOT EXISTS (SELECT 1 FROM strato_whatsapp_webhook_wakeup)
        """)
