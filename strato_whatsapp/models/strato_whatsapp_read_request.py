from odoo import api, fields, models
from odoo.osv import expression

# Requests applied per round of the processing cron.
APPLY_BATCH_SIZE = 1000


class StratoWhatsappReadRequest(models.Model):
    """An agent read a conversation's received messages, up to a message: applied by the processing cron.

    The processing cron (``strato.whatsapp.webhook.event._cron_process``) is the only writer of received
    messages and of their conversation's unread count. If the agent's request wrote them too, two
    overlapping transactions would update the same rows, and under PostgreSQL's repeatable read (Odoo's
    isolation) one of them fails with "could not serialize access due to concurrent update": measured
    at about 100 ERRORs a minute with an agent's chat open while the contact keeps writing, with webhook
    events failed and retried seconds later, chatter slices redone and deadlocks (bench-like load). An
    insert never conflicts: reading only records what was read, and wakes the cron, which applies it in
    milliseconds (one chatter slice at most under load).
    """

    _name = "strato.whatsapp.read.request"
    _description = "WhatsApp Messages Read by an Agent"
    _log_access = False
    _order = "id"

    # Plain ids, not many2ones: a foreign key check would lock the very rows the cron writes.
    conversation_ref = fields.Integer(required=True, readonly=True)
    # The lead whose chat was read (0: none). A conversation can move between leads: the messages it had on
    # another salesperson's lead are theirs to read.
    lead_ref = fields.Integer(readonly=True)
    up_to_message_ref = fields.Integer(required=True, readonly=True)

    @api.model
    def _request(self, messages):
        """Record that the agent read ``messages`` (received, unread; found with the agent's rights)."""
        newest = {}
        for message in messages:
            key = (message.conversation_id.id, message.lead_id.id or 0)
            newest[key] = max(newest.get(key, 0), message.id)
        if not newest:
            return
        # The caller could read these messages (they were found with their rights); the request only names
        # them, and the cron marks no message beyond them.
        # sudo: records what the caller read; users have no rights on these requests.
        self.sudo().create([{"conversation_ref": conversation, "lead_ref": lead, "up_to_message_ref": message_id}
                            for (conversation, lead), message_id in newest.items()])
        # sudo: the addon's own cron, woken to apply what the agent read.
        self.env["strato.whatsapp.webhook.event"]._processing_cron().sudo()._trigger()

    @api.model
    def _apply_pending(self):
        """Mark read what agents asked for (the processing cron's part; the caller commits). A message
        whose chatter post is still pending is left for a later round: the chatter pass writes its row."""
        requests = self.search([], limit=APPLY_BATCH_SIZE)
        if not requests:
            return 0
        newest = {}
        for request in requests:
            key = (request.conversation_ref, request.lead_ref)
            newest[key] = max(newest.get(key, 0), request.up_to_message_ref)
        Message = self.env["strato.whatsapp.message"]
        shown = expression.OR([[("conversation_id", "=", conversation), ("lead_id", "=", lead or False),
                                ("id", "<=", message_id)]
                               for (conversation, lead), message_id in newest.items()])
        unread = Message.search(expression.AND([shown, [("direction", "=", "inbound"), ("is_read", "=", False)]]))
        ready = unread.filtered(lambda message: not message.chatter_pending)
        ready.write({"is_read": True})
        ready._queue_read_receipts()
        waiting = {(message.conversation_id.id, message.lead_id.id or 0) for message in unread - ready}
        requests.filtered(lambda request: (request.conversation_ref, request.lead_ref) not in waiting).unlink()
        return len(ready)
