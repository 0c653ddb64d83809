from datetime import timedelta

from odoo import api, fields, models

from ..tools import webhook

KEEP_DAYS = 7  # Meta stops redelivering after 7 days; a status still unmatched then never will be


class StratoWhatsappEarlyStatus(models.Model):
    """A status webhook that arrived before its message was known (the send had not committed yet).

    Kept with its payload and applied as soon as a message with its wamid is stored.
    """

    _name = "strato.whatsapp.early.status"
    _description = "WhatsApp Status Awaiting Its Message"
    _order = "status_at, id"

    account_id = fields.Many2one("strato.whatsapp.account", required=True, ondelete="cascade", index=True)
    wamid = fields.Char(required=True, index=True)
    status = fields.Char(required=True)
    status_at = fields.Datetime(required=True)
    payload = fields.Json(required=True, help="The status object as Meta sent it.")

    _sql_constraints = [
        ("account_wamid_status_uniq", "unique(account_id, wamid, status)", "This status is already kept."),
    ]

    @api.model
    def _keep(self, account, events):
        known = {(early.wamid, early.status) for early in self.search([
            ("account_id", "=", account.id), ("wamid", "in", [event.wamid for event in events])])}
        values = []
        for event in events:
            if (event.wamid, event.status) not in known:
                known.add((event.wamid, event.status))
                values.append({"account_id": account.id, "wamid": event.wamid, "status": event.status,
                               "status_at": event.timestamp, "payload": self._envelope(event)})
        return self.create(values)

    @api.model
    def _envelope(self, event):
        return {"phone_number_id": event.phone_number_id, "waba_id": event.waba_id, "status": event.raw}

    def _events(self):
        events = []
        for early in self:
            payload = {"object": "whatsapp_business_account", "entry": [{"id": early.payload.get("waba_id") or "",
                       "changes": [{"field": "messages", "value": {
                           "messaging_product": "whatsapp",
                           "metadata": {"phone_number_id": early.payload.get("phone_number_id")},
                           "statuses": [early.payload.get("status")]}}]}]}
            events.extend(item for item in webhook.extract_events(payload) if isinstance(item, webhook.StatusUpdate))
        return events

    @api.model
    def _apply_for(self, messages):
        """Apply the kept statuses of ``messages`` (which just got their wamid) and forget them."""
        with_wamid = messages.filtered("wamid")
        if not with_wamid:
            return
        early = self.search([("account_id", "in", with_wamid.account_id.ids),
                             ("wamid", "in", with_wamid.mapped("wamid"))])
        for account in early.account_id:
            account_early = early.filtered(lambda status: status.account_id == account)
            self.env["strato.whatsapp.message"]._apply_statuses(account, account_early._events())
        early.unlink()

    @api.model
    def _apply_ready(self):
        """Apply kept statuses whose message now has its wamid (stored after they were looked for)."""
        self.flush_model()
        self.env.cr.execute("""
            SELECT DISTINCT message.id
              FROM strato_whatsapp_early_status early
              JOIN strato_whatsapp_message message
                ON message.account_id = early.account_id AND message.wamid = early.wamid
        """)
        ready = self.env["strato.whatsapp.message"].browse(row[0] for row in self.env.cr.fetchall())
        if ready:
            self._apply_for(ready)

    @api.autovacuum
    def _gc_expired(self):
        self.search([("create_date", "<", fields.Datetime.now() - timedelta(days=KEEP_DAYS))]).unlink()
