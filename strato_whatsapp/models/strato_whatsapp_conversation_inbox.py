from odoo import api, fields, models

from .strato_whatsapp_message_chat import FAILED_STATES

PREVIEW_LENGTH = 80


class StratoWhatsappConversationInbox(models.Model):
    """What the inbox (list and kanban of conversations) shows and filters on."""

    _inherit = "strato.whatsapp.conversation"

    has_unread = fields.Boolean("Unread", compute="_compute_has_unread", store=True)
    failed_count = fields.Integer(
        "Failed Messages", compute="_compute_failed_count", store=True,
        help="Messages to the contact that failed, or whose outcome is unknown, and were not retried.")
    has_failed = fields.Boolean("Has Failed Messages", compute="_compute_has_failed", store=True)
    last_message_preview = fields.Char("Last Message", compute="_compute_last_message")
    last_message_direction = fields.Selection(
        [("inbound", "Received"), ("outbound", "Sent")], compute="_compute_last_message")
    last_message_state = fields.Char(compute="_compute_last_message")

    @api.depends("unread_count")
    def _compute_has_unread(self):
        for conversation in self:
            conversation.has_unread = conversation.unread_count > 0

    @api.depends("message_ids.state")
    def _compute_failed_count(self):
        counts = dict(self.env["strato.whatsapp.message"]._read_group(
            [("conversation_id", "in", self.ids), ("direction", "=", "outbound"), ("state", "in", FAILED_STATES)],
            ["conversation_id"], ["__count"]))
        for conversation in self:
            conversation.failed_count = counts.get(conversation, 0)

    @api.depends("failed_count")
    def _compute_has_failed(self):
        for conversation in self:
            conversation.has_failed = conversation.failed_count > 0

    def _compute_last_message(self):
        latest = self._latest_messages()
        for conversation in self:
            message = latest.get(conversation.id)
            conversation.last_message_direction = message.direction if message else False
            conversation.last_message_state = message.state if message else False
            text = " ".join((message._chatter_text() or "").split()) if message else ""
            conversation.last_message_preview = (
                text if len(text) <= PREVIEW_LENGTH else text[:PREVIEW_LENGTH - 1] + "…")

    def _latest_messages(self):
        """{conversation id: its latest message other than a reaction}, in one query."""
        ids = [conversation_id for conversation_id in self.ids if conversation_id]
        if not ids:
            return {}
        self.env["strato.whatsapp.message"].flush_model(["conversation_id", "message_at", "message_type"])
        self.env.cr.execute("""
            SELECT DISTINCT ON (conversation_id) conversation_id, id
              FROM strato_whatsapp_message
             WHERE conversation_id IN %s AND message_type != 'reaction'
             ORDER BY conversation_id, message_at DESC, id DESC
        """, [tuple(ids)])
        rows = self.env.cr.fetchall()
        messages = self.env["strato.whatsapp.message"].browse(message_id for _conversation, message_id in rows)
        return {conversation_id: message for (conversation_id, _id), message in zip(rows, messages)}

    def action_mark_read(self):
        """Also queue read receipts at Meta for the numbers that send them."""
        unread = self.env["strato.whatsapp.message"].search([
            ("conversation_id", "in", self.ids), ("direction", "=", "inbound"), ("is_read", "=", False)])
        result = super().action_mark_read()
        unread._queue_read_receipts()
        return result

    def action_open_chat(self):
        """The lead's form, where the chat lives (the conversation's own form when it has no lead)."""
        self.ensure_one()
        self.check_access("read")
        if self.lead_id:
            return self.action_open_lead()
        return {"type": "ir.actions.act_window", "res_model": self._name, "res_id": self.id,
                "views": [(False, "form")]}
