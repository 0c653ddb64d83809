import logging
import threading
from datetime import timedelta

from odoo import _, api, fields, models

from ..tools import graph_api, webhook

_logger = logging.getLogger(__name__)

EVENT_STATES = [
    ("pending", "To Process"),
    ("done", "Processed"),
    ("failed", "Failed"),
]
MAX_AUTOMATIC_ATTEMPTS = 8
BATCH_SIZE = 100
KEEP_PROCESSED_DAYS = 30


class StratoWhatsappWebhookEvent(models.Model):
    """A webhook POST from Meta, stored as received before anything else happens.

    The request only verifies and stores (Meta wants answers well under a second); a cron turns stored
    events into messages, statuses and template updates. A failure keeps the event with its error, to be
    retried with backoff or replayed by an administrator. Processing is idempotent, so a redelivered or
    replayed event changes nothing that was already applied.
    """

    _name = "strato.whatsapp.webhook.event"
    _description = "WhatsApp Webhook Event"
    _order = "id desc"

    account_id = fields.Many2one("strato.whatsapp.account", ondelete="cascade", index=True, readonly=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    payload = fields.Text(required=True, readonly=True, help="The body exactly as Meta sent it.")
    summary = fields.Char(compute="_compute_summary")
    state = fields.Selection(EVENT_STATES, required=True, default="pending", index=True, readonly=True)
    error = fields.Text(readonly=True)
    attempt_count = fields.Integer("Attempts", readonly=True)
    next_attempt_at = fields.Datetime("Next Attempt", readonly=True)
    processed_at = fields.Datetime(readonly=True)

    def _compute_summary(self):
        for event in self:
            try:
                parsed = webhook.extract_events(webhook.parse_body(event.payload.encode()))
            except webhook.WebhookPayloadError as error:
                event.summary = str(error)
                continue
            counts = {}
            for item in parsed:
                counts[type(item).__name__] = counts.get(type(item).__name__, 0) + 1
            event.summary = ", ".join(f"{count} {kind}" for kind, count in counts.items())

    @api.model
    def _store(self, account, raw_body):
        """Persist one authenticated POST and wake the processing cron. Called by the webhook route."""
        event = self.sudo().create({"account_id": account.id, "payload": raw_body.decode()})
        self.env.ref("strato_whatsapp.ir_cron_whatsapp_webhook").sudo()._trigger()
        return event

    @api.model
    def _cron_process(self, limit=None):
        """Process pending events, and failed ones whose retry time has come, in committed batches."""
        processed = 0
        while True:
            events = self._claim_batch(BATCH_SIZE)
            if not events:
                break
            events._process()
            processed += len(events)
            self._commit_progress(processed)
            if limit and processed >= limit:
                break
        return processed

    @api.model
    def _claim_batch(self, size):
        # SKIP LOCKED: several cron workers, or a replay clicked meanwhile, never process one event twice.
        self.flush_model()
        self.env.cr.execute("""
            SELECT id FROM strato_whatsapp_webhook_event
             WHERE state = 'pending' OR (state = 'failed' AND next_attempt_at <= %s)
             ORDER BY id
             LIMIT %s
               FOR NO KEY UPDATE SKIP LOCKED
        """, [fields.Datetime.now(), size])
        return self.browse(row[0] for row in self.env.cr.fetchall())

    def _commit_progress(self, processed):
        if getattr(threading.current_thread(), "testing", False):
            return
        self.env["ir.cron"]._notify_progress(done=processed, remaining=0)
        self.env.cr.commit()

    def _process(self):
        for event in self:
            try:
                with self.env.cr.savepoint():
                    event._apply()
            except Exception as error:  # noqa: BLE001 - whatever breaks, the event is kept to retry
                event._record_failure(error)
            else:
                event.write({"state": "done", "error": False, "processed_at": fields.Datetime.now(),
                             "next_attempt_at": False})

    def _record_failure(self, error):
        attempts = self.attempt_count + 1
        _logger.warning("WhatsApp webhook event %s failed (attempt %s): %s", self.id, attempts, error)
        retry_in = graph_api.retry_delay(attempts)
        self.write({
            "state": "failed",
            "error": f"{type(error).__name__}: {error}",
            "attempt_count": attempts,
            "next_attempt_at": fields.Datetime.now() + timedelta(seconds=retry_in)
            if attempts < MAX_AUTOMATIC_ATTEMPTS else False,
        })

    def _apply(self):
        """Turn this event's payload into records. Idempotent."""
        payload = webhook.parse_body(self.payload.encode())
        items = webhook.extract_events(payload)
        accounts = self._accounts_by_phone_number_id(items)
        messages = [item for item in items if isinstance(item, webhook.InboundMessage)]
        statuses = [item for item in items if isinstance(item, webhook.StatusUpdate)]
        for phone_number_id, account in accounts.items():
            account_messages = [item for item in messages if item.phone_number_id == phone_number_id]
            account_statuses = [item for item in statuses if item.phone_number_id == phone_number_id]
            if account_messages:
                self.env["strato.whatsapp.message"]._receive(account, account_messages)
            if account_statuses:
                self.env["strato.whatsapp.message"]._apply_statuses(account, account_statuses)
        template_events = [item for item in items if isinstance(item, (
            webhook.TemplateStatusUpdate, webhook.TemplateQualityUpdate, webhook.TemplateCategoryUpdate))]
        if template_events:
            self.env["strato.whatsapp.template"]._apply_meta_events(self.account_id, template_events)
        self._log_unhandled(items, accounts)

    def _accounts_by_phone_number_id(self, items):
        """The accounts the items are for. The signature proved the sender holds this event's app secret,
        so only numbers of that same Meta app may be touched by it."""
        phone_number_ids = {item.phone_number_id for item in items if item.phone_number_id}
        secret = self.account_id.sudo().app_secret
        accounts = self.env["strato.whatsapp.account"].sudo().search([
            ("phone_number_id", "in", list(phone_number_ids))])
        return {account.phone_number_id: account for account in accounts if account.app_secret == secret}

    def _log_unhandled(self, items, accounts):
        for item in items:
            if isinstance(item, webhook.InvalidItem):
                _logger.warning("WhatsApp webhook event %s: skipped an invalid %s: %s", self.id, item.kind, item.reason)
            elif isinstance(item, webhook.WebhookErrors):
                _logger.warning("WhatsApp webhook event %s: Meta reported errors: %s", self.id, item.errors)
            elif isinstance(item, webhook.UnsupportedChange):
                _logger.info("WhatsApp webhook event %s: field %s is not handled", self.id, item.field)
            elif item.phone_number_id and item.phone_number_id not in accounts:
                _logger.warning("WhatsApp webhook event %s: no account for phone number id %s",
                                self.id, item.phone_number_id)

    def action_replay(self):
        """Process these events again now (safe: already applied parts are recognized and skipped)."""
        self.write({"state": "pending", "next_attempt_at": False})
        self._process()
        failed = self.filtered(lambda event: event.state == "failed")
        if failed:
            return self.env["strato.whatsapp.account"]._notification(
                _("Replay failed"), _("%s event(s) failed again; see their error.", len(failed)), "danger")
        return self.env["strato.whatsapp.account"]._notification(
            _("Replayed"), _("%s event(s) processed.", len(self)), "success")

    @api.autovacuum
    def _gc_processed_events(self):
        limit = fields.Datetime.now() - timedelta(days=KEEP_PROCESSED_DAYS)
        self.search([("state", "=", "done"), ("processed_at", "<", limit)], limit=10000).unlink()
