import logging
import threading

from odoo import _, api, fields, models

from ..tools import graph_api, webhook

_logger = logging.getLogger(__name__)

READ_RECEIPT_STATES = [
    ("pending", "To Send"),
    ("done", "Sent"),
    ("failed", "Failed"),
]
READ_RECEIPT_BATCH_SIZE = 100
READ_RECEIPT_MAX_ATTEMPTS = 5
FAILED_STATES = ("failed", "unknown")
# A change to any of these redraws the message in open chat panels.
CHAT_VISIBLE_FIELDS = frozenset({"state", "reaction_emoji", "attachment_ids", "media_state", "body", "lead_id"})


class StratoWhatsappMessageChat(models.Model):
    """What the chat panel shows of a message, and read receipts sent to Meta when an agent reads it.

    Read receipts are queued and sent by a cron: opening a chat must never wait on Meta.
    """

    _inherit = "strato.whatsapp.message"

    read_receipt_state = fields.Selection(
        READ_RECEIPT_STATES, "Read Receipt", readonly=True, copy=False, index="btree_not_null",
        help="For received messages: whether Meta was told (blue ticks on the contact's phone) that an "
             "agent read it.")
    read_receipt_attempts = fields.Integer(readonly=True, copy=False)

    @api.model_create_multi
    def create(self, vals_list):
        messages = super().create(vals_list)
        messages._notify_chat()  # other agents with the lead open see it too
        return messages

    def write(self, vals):
        result = super().write(vals)
        if CHAT_VISIBLE_FIELDS.intersection(vals):
            self._notify_chat()
        return result

    # ------------------------------------------------------------------
    # The chat panel
    # ------------------------------------------------------------------
    def _chat_values(self):
        """The messages as the chat panel draws them, oldest first."""
        quoted = self._chat_quoted_messages()
        return [message._chat_message_values(quoted) for message in self.sorted(lambda m: (m.message_at, m.id))]

    def _chat_quoted_messages(self):
        wamids = [wamid for wamid in self.mapped("reply_to_wamid") if wamid]
        if not wamids:
            return {}
        # Within the conversation: a wamid named by the contact must not pull in another contact's message.
        quoted = self.search([("conversation_id", "in", self.conversation_id.ids), ("wamid", "in", wamids)])
        return {(message.conversation_id.id, message.wamid): message for message in quoted}

    def _chat_message_values(self, quoted):
        self.ensure_one()
        reply_to = quoted.get((self.conversation_id.id, self.reply_to_wamid))
        values = {
            "id": self.id,
            "direction": self.direction,
            "type": self.message_type,
            "body": self._chat_body(),
            "date": fields.Datetime.to_string(self.message_at),
            "state": self.state,
            "state_label": dict(self._fields["state"]._description_selection(self.env)).get(self.state),
            "error": self._chat_error(),
            "reaction": self.reaction_emoji or "",
            "author": self.author_id.name or "",
            "template": self.template_id.name or "",
            "is_voice": self.is_voice,
            "media_state": self.media_state,
            "filename": self.media_filename or "",
            "map_url": self._chat_map_url(),
            "reply_to": reply_to and (reply_to._chat_text_snippet()) or "",
            "attachments": [{
                "id": attachment.id,
                "name": attachment.name,
                "mimetype": attachment.mimetype or "",
                "url": f"/web/content/{attachment.id}",
            } for attachment in self.attachment_ids],
        }
        return values

    def _chat_body(self):
        if self.message_type == "location":
            # The body ends with the map link, which the panel shows as a button instead.
            return "\n".join(line for line in (self.body or "").splitlines() if not line.startswith("http"))
        return self.body or ""

    def _chat_text_snippet(self):
        text = self._chatter_text() or ""
        return text if len(text) <= 120 else text[:119] + "…"

    def _chat_map_url(self):
        if self.message_type != "location" or not (self.latitude or self.longitude):
            return ""
        try:
            return webhook.map_link(self.latitude, self.longitude)
        except ValueError:
            return ""

    def _chat_error(self):
        if self.state not in FAILED_STATES:
            return ""
        if self.error_code:
            return _("Error %(code)s: %(reason)s", code=self.error_code, reason=self.error_message or "")
        return self.error_message or ""

    # ------------------------------------------------------------------
    # Read by an agent: in Odoo, and (if the number wants it) at Meta
    # ------------------------------------------------------------------
    def _mark_read_by_agent(self):
        """Mark these received messages read in Odoo and queue their read receipts for Meta."""
        unread = self.filtered(lambda message: message.direction == "inbound" and not message.is_read)
        if not unread:
            return unread
        # Users do not write messages, and this flag is the one thing reading changes.
        # sudo: the caller can read these messages (they were found with their rights).
        unread.sudo().write({"is_read": True})
        unread._queue_read_receipts()
        return unread

    def _queue_read_receipts(self):
        wanted = self.filtered(lambda message: message.wamid and not message.read_receipt_state
                               and message.direction == "inbound" and message.account_id.send_read_receipts)
        if wanted:
            # sudo: same messages as above; the receipt state is the read-receipt queue's own.
            wanted.sudo().write({"read_receipt_state": "pending"})
            # sudo: the addon's own cron; waking it sends only receipts already queued.
            self.env.ref("strato_whatsapp.ir_cron_whatsapp_read_receipts").sudo()._trigger()

    @api.model
    def _cron_send_read_receipts(self):
        """Tell Meta which received messages agents have read, one call per conversation.

        Marking a message read at Meta marks the earlier ones of the conversation too, so only the
        newest pending message of each conversation is sent.
        """
        last_id = 0  # a receipt left pending after an error waits for the next run
        while True:
            batch = self._claim_read_receipts(last_id, READ_RECEIPT_BATCH_SIZE)
            if not batch:
                return
            last_id = max(batch.ids)
            for conversation in batch.conversation_id:
                batch.filtered(lambda message: message.conversation_id == conversation)._send_read_receipt()
            if not getattr(threading.current_thread(), "testing", False):
                self.env.cr.commit()

    @api.model
    def _claim_read_receipts(self, after_id, size):
        self.flush_model()
        self.env.cr.execute("""
            SELECT id FROM strato_whatsapp_message
             WHERE read_receipt_state = 'pending' AND id > %s
             ORDER BY id
             LIMIT %s
               FOR NO KEY UPDATE SKIP LOCKED
        """, [after_id, size])
        return self.browse(row[0] for row in self.env.cr.fetchall())

    def _send_read_receipt(self):
        """Send the receipt for the newest of these messages (all of one conversation)."""
        newest = self.sorted(lambda message: (message.message_at, message.id))[-1]
        try:
            newest.account_id._graph_client().mark_as_read(newest.wamid)
        except graph_api.GraphApiError as error:
            self._read_receipt_failed(error)
            return
        except Exception as error:  # noqa: BLE001 - e.g. no token yet: retried like a network error
            self._read_receipt_failed(graph_api.GraphApiError(str(error), retryable=True))
            return
        self.write({"read_receipt_state": "done"})

    def _read_receipt_failed(self, error):
        attempts = max(self.mapped("read_receipt_attempts")) + 1
        if error.retryable and attempts < READ_RECEIPT_MAX_ATTEMPTS and not error.blocks_account:
            self.write({"read_receipt_attempts": attempts})
            return
        # A receipt is a courtesy: after a few tries it is dropped, never blocking anything else.
        _logger.info("WhatsApp read receipt for %s message(s) not sent: %s", len(self), error.message)
        self.write({"read_receipt_state": "failed", "read_receipt_attempts": attempts})

