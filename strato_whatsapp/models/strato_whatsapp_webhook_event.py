import logging
import threading
import time
from datetime import timedelta

from odoo import _, api, fields, models

from ..tools import graph_errors, phone, webhook
from .strato_whatsapp_conversation import _inert_name

_logger = logging.getLogger(__name__)

EVENT_STATES = [
    ("pending", "To Process"),
    ("done", "Processed"),
    ("failed", "Failed"),
]
MAX_AUTOMATIC_ATTEMPTS = 8
BATCH_SIZE = 100
KEEP_PROCESSED_DAYS = 30
# One processing run stays well under Odoo's cron time limit, then hands over to a fresh run.
RUN_SECONDS = 50
# Chatter posts are slow (notifications): while events keep arriving they get this long between two
# claims, so message rows stay current and the chatter catches up when the burst is over.
CHATTER_SLICE_BUSY_SECONDS = 0.1
CHATTER_SLICE_IDLE_SECONDS = 0.5
# An event's error names at most this many skipped or failed items, each cut to this length: enough to
# find them in the payload, however many a body holds.
ERROR_ITEMS = 5
ERROR_ITEM_CHARS = 300
# The summary of an event names this many of its items.
SUMMARY_ITEMS = 3


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
            lines = [event._item_summary(item) for item in parsed[:SUMMARY_ITEMS]]
            if len(parsed) > SUMMARY_ITEMS:
                lines.append(_("and %s more", len(parsed) - SUMMARY_ITEMS))
            event.summary = "; ".join(lines) or _("Nothing to apply")

    @api.model
    def _item_summary(self, item):
        """Whose message or status an item is, in words ("Message from Marta (+34 600 000 201)")."""
        wa_id = getattr(item, "wa_id", None) or getattr(item, "recipient_id", None)
        e164 = phone.e164_from_wa_id(wa_id) if wa_id else None
        number = phone.format_international(e164) if e164 else None
        who = number or getattr(item, "bsuid", None) or getattr(item, "recipient_bsuid", None) or _("an unknown number")
        if isinstance(item, webhook.InboundMessage):
            name = _inert_name(item.profile_name) if getattr(item, "profile_name", None) else None
            return _("Message from %(name)s (%(number)s)", name=name, number=who) if name else \
                _("Message from %s", who)
        if isinstance(item, webhook.StatusUpdate):
            states = dict(self.env["strato.whatsapp.message"]._fields["state"]._description_selection(self.env))
            return _("Status \"%(status)s\" of a message to %(number)s",
                     status=states.get(item.status, item.status), number=who)
        if isinstance(item, (webhook.TemplateStatusUpdate, webhook.TemplateQualityUpdate)):
            return _("Update of template %s", item.name or "?")
        return _("Other notification from Meta")

    @api.model
    def _store(self, account, raw_body):
        """Persist one authenticated POST and make sure a processing run will see it (the wake-up
        protocol: ``strato.whatsapp.webhook.wakeup``). Called by the webhook route; in the usual case it
        costs one statement."""
        Wakeup = self.env["strato.whatsapp.webhook.wakeup"]
        if not Wakeup._transaction_idle(self.env.cr):
            # The request's transaction has already read something: its snapshot could predate the
            # latest clearing of the wake-up. A transaction of our own reads the current state.
            with self.env.registry.cursor() as own_cr:
                return self.with_env(self.env(cr=own_cr))._store_now(account, raw_body).with_env(self.env)
        return self._store_now(account, raw_body)

    @api.model
    def _store_now(self, account, raw_body):
        now = fields.Datetime.now()
        event_id = self.env["strato.whatsapp.webhook.wakeup"]._store_and_wake("""
            INSERT INTO strato_whatsapp_webhook_event
                   (account_id, company_id, payload, state, attempt_count, create_uid, write_uid, create_date, write_date)
            SELECT account.id, account.company_id, %s, 'pending', 0, %s, %s, %s, %s
              FROM strato_whatsapp_account AS account
             WHERE account.id = %s
            RETURNING id""", [raw_body.decode(), self.env.uid, self.env.uid, now, now, account.id],
            self._processing_cron)
        if not event_id:
            _logger.warning("WhatsApp webhook for account %s, deleted meanwhile: nothing stored", account.id)
            return self.browse()
        return self.browse(event_id)

    @api.model
    def _processing_cron(self):
        # sudo: the addon's own cron, woken for events a signed POST stored.
        return self.env.ref("strato_whatsapp.ir_cron_whatsapp_webhook").sudo()

    @api.model
    def _cron_process(self, limit=None, run_seconds=RUN_SECONDS):
        """Process pending events, and failed ones whose retry time has come, in committed batches.

        Message rows come first: between two claims of new events, the chatter posts of received messages
        (much slower: notifications) get a short slice, so a burst of webhooks turns into messages quickly
        and the chatter catches up when the burst is over. The run ends when it has consumed every wake-up
        (see ``_store``), or after ``run_seconds``, handing over to a fresh run."""
        deadline = time.monotonic() + run_seconds
        processed = 0
        Message = self.env["strato.whatsapp.message"]
        Wakeup = self.env["strato.whatsapp.webhook.wakeup"]
        Reads = self.env["strato.whatsapp.read.request"]
        while True:
            Wakeup._start_epoch(self._commit_progress)
            while time.monotonic() < deadline:
                events = self._claim_batch(BATCH_SIZE)
                if events:
                    events._process()
                    processed += len(events)
                    self._commit_progress(processed)
                    if limit and processed >= limit:
                        return processed
                    Message._post_pending_chatter(commit=self._commit_progress,
                                                  max_seconds=CHATTER_SLICE_BUSY_SECONDS)
                    more_chatter = True
                else:
                    more_chatter = Message._post_pending_chatter(commit=self._commit_progress,
                                                                 max_seconds=CHATTER_SLICE_IDLE_SECONDS)
                # What agents read, by this cron: the only writer of received messages (see the model).
                if Reads._apply_pending():
                    self._commit_progress(processed)
                if not more_chatter:
                    break
            # A status kept while its message's send was still uncommitted is applied once the wamid is there.
            self.env["strato.whatsapp.early.status"]._apply_ready()
            if time.monotonic() >= deadline:
                self._processing_cron()._trigger()
                self._commit_progress(processed)
                return processed
            if not Wakeup._requested():
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

    def _commit_progress(self, processed=0):
        if getattr(threading.current_thread(), "testing", False):
            return  # Odoo's idiom (crm, event): tests run in one transaction
        if processed:
            self.env["ir.cron"]._notify_progress(done=processed, remaining=0)
        self.env.cr.commit()

    def _process(self):
        """Apply these events together (one savepoint, batched lookups); when that fails, one by one, so
        the faulty event is isolated and the others still go through; and a failing event item by item,
        so that one bad message costs itself only, not the other customers' messages of its POST."""
        if len(self) > 1:
            try:
                with self.env.cr.savepoint():
                    notes = self._apply()
            except Exception:  # noqa: BLE001 - retried below, event by event
                _logger.info("WhatsApp webhook batch of %s events failed; processing them one by one", len(self))
            else:
                self._mark_done(notes)
                return
        for event in self:
            try:
                with self.env.cr.savepoint():
                    notes = event._apply()
            except Exception as error:  # noqa: BLE001 - retried below, item by item
                event._apply_item_by_item(error)
            else:
                event._mark_done(notes)

    def _mark_done(self, notes=None):
        """``notes``: {event id: what was skipped}, kept as the event's error so an administrator sees it."""
        notes = notes or {}
        values = {"state": "done", "error": False, "processed_at": fields.Datetime.now(), "next_attempt_at": False}
        noted = self.filtered(lambda event: event.id in notes)
        (self - noted).write(values)
        for event in noted:
            event.write({**values, "error": notes[event.id]})

    def _record_failure(self, error, text=None):
        attempts = self.attempt_count + 1
        _logger.warning("WhatsApp webhook event %s failed (attempt %s): %s", self.id, attempts, text or error)
        retry_in = graph_errors.retry_delay(attempts)
        self.write({
            "state": "failed",
            "error": text or f"{type(error).__name__}: {error}",
            "attempt_count": attempts,
            "next_attempt_at": fields.Datetime.now() + timedelta(seconds=retry_in)
            if attempts < MAX_AUTOMATIC_ATTEMPTS else False,
        })

    def _apply(self):
        """Turn these events' payloads into records, batched per account. Idempotent. Returns {event id:
        note} for the events some of whose items were skipped as invalid."""
        notes = {}
        for _secret_holder, events in self.grouped("account_id").items():
            parsed = [(event, event._items()) for event in events]
            items = [item for _event, event_items in parsed for item in event_items]
            accounts = events._accounts_by_phone_number_id(items)
            for event, event_items in parsed:
                note = event._log_unhandled(event_items, accounts)
                if note:
                    notes[event.id] = note
            events._apply_items(items, accounts)
        return notes

    def _items(self):
        """This event's items; strings made storable, and times no later than its receipt (see
        ``webhook.extract_events``)."""
        self.ensure_one()
        return webhook.extract_events(webhook.parse_body(self.payload.encode(), storable=True),
                                      received_at=self.create_date)

    def _apply_item_by_item(self, error):
        """After this event failed as a whole: apply each item in a savepoint of its own. The event is
        done when every item went through, and otherwise failed with the items that did not (retried like
        any failed event: what was applied is then recognized and skipped)."""
        try:
            items = self._items()
            accounts = self._accounts_by_phone_number_id(items)
        except Exception as parse_error:  # noqa: BLE001 - the event is kept with its error, to retry
            self._record_failure(parse_error)
            return
        note = self._log_unhandled(items, accounts)
        failures = []
        for item in items:
            try:
                with self.env.cr.savepoint():
                    self._apply_items([item], accounts)
            except Exception as item_error:  # noqa: BLE001 - this item only; the event keeps its error
                failures.append(f"{item.dedup_key}: {type(item_error).__name__}: {item_error}")
        if not failures:
            _logger.info("WhatsApp webhook event %s went through item by item after failing as a whole: %s",
                         self.id, error)
            self._mark_done({self.id: note} if note else None)
            return
        self._record_failure(error, text="\n".join(filter(None, [self.env._(
            "%(failed)s of %(total)s item(s) failed; the others were applied: %(items)s",
            failed=len(failures), total=len(items), items=self._error_list(failures)), note])))

    @api.model
    def _error_list(self, lines):
        shown = [line if len(line) <= ERROR_ITEM_CHARS else line[:ERROR_ITEM_CHARS - 1] + "…"
                 for line in lines[:ERROR_ITEMS]]
        if len(lines) > ERROR_ITEMS:
            shown.append(self.env._("and %s more", len(lines) - ERROR_ITEMS))
        return "; ".join(shown)

    def _apply_items(self, items, accounts):
        Message = self.env["strato.whatsapp.message"]
        for phone_number_id, account in accounts.items():
            messages = [item for item in items if isinstance(item, webhook.InboundMessage)
                        and item.phone_number_id == phone_number_id]
            statuses = [item for item in items if isinstance(item, webhook.StatusUpdate)
                        and item.phone_number_id == phone_number_id]
            if messages:
                Message._receive(account, messages)
            if statuses:
                Message._apply_statuses(account, statuses)
            preferences = [item for item in items if isinstance(item, webhook.MarketingPreference)
                           and item.phone_number_id == phone_number_id]
            if preferences:
                Message._apply_marketing_preferences(account, preferences)
        template_events = [item for item in items if isinstance(item, (
            webhook.TemplateStatusUpdate, webhook.TemplateQualityUpdate, webhook.TemplateCategoryUpdate))]
        if template_events:
            self.env["strato.whatsapp.template"]._apply_meta_events(self[:1].account_id, template_events)

    def _accounts_by_phone_number_id(self, items):
        """The accounts the items are for. The signature proved the sender holds this event's app secret,
        so only numbers of that same Meta app may be touched by it."""
        phone_number_ids = {item.phone_number_id for item in items if item.phone_number_id}
        # sudo: webhook processing (cron) for a signed event; secrets are compared, never shown.
        secret = self[:1].account_id.sudo().app_secret
        # sudo: numbers found by id for a signed event; kept only if their app secret matches (below).
        accounts = self.env["strato.whatsapp.account"].sudo().search([
            ("phone_number_id", "in", list(phone_number_ids))])
        return {account.phone_number_id: account for account in accounts if account.app_secret == secret}

    def _log_unhandled(self, items, accounts):
        """Log what these items leave aside; returns a note naming the invalid ones (nothing signed is
        dropped without a trace an administrator can see), or None."""
        invalid = []
        for item in items:
            if isinstance(item, webhook.InvalidItem):
                _logger.warning("WhatsApp webhook event %s: skipped an invalid %s: %s", self.id, item.kind, item.reason)
                invalid.append(self._invalid_item_label(item))
            elif isinstance(item, webhook.WebhookErrors):
                _logger.warning("WhatsApp webhook event %s: Meta reported errors: %s", self.id, item.errors)
            elif isinstance(item, webhook.UnsupportedChange):
                _logger.info("WhatsApp webhook event %s: field %s is not handled", self.id, item.field)
            elif item.phone_number_id and item.phone_number_id not in accounts:
                _logger.warning("WhatsApp webhook event %s: no account for phone number id %s",
                                self.id, item.phone_number_id)
        if not invalid:
            return None
        return self.env._("%(count)s invalid item(s) skipped: %(items)s",
                          count=len(invalid), items=self._error_list(invalid))

    @api.model
    def _invalid_item_label(self, item):
        """'message wamid.X: message has no valid "timestamp"': what an administrator looks for."""
        raw_id = item.raw.get("id") if isinstance(item.raw, dict) else None
        named = isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool)
        return f"{item.kind} {raw_id}: {item.reason}" if named else f"{item.kind}: {item.reason}"

    def action_replay(self):
        """Process these events again now (safe: already applied parts are recognized and skipped)."""
        self.check_access("write")
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
