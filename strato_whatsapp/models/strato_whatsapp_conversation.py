from datetime import timedelta

from odoo import _, api, fields, models

from ..tools import phone

# Meta's customer service window: free-form messages are allowed for 24 h after the user's last message.
SERVICE_WINDOW = timedelta(hours=24)


class StratoWhatsappConversation(models.Model):
    """The thread between one of our WhatsApp numbers and one WhatsApp user."""

    _name = "strato.whatsapp.conversation"
    _description = "WhatsApp Conversation"
    _order = "last_message_at desc nulls last, id desc"
    _rec_names_search = ["lead_id", "wa_id", "profile_name"]

    account_id = fields.Many2one(
        "strato.whatsapp.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True, index=True)
    lead_id = fields.Many2one("crm.lead", ondelete="set null", index="btree_not_null")
    user_id = fields.Many2one(related="lead_id.user_id", string="Salesperson")
    partner_id = fields.Many2one("res.partner", ondelete="set null", index="btree_not_null")
    wa_id = fields.Char(
        "WhatsApp ID", index="btree_not_null",
        help="The user's number as WhatsApp identifies it: the digits of the E.164 number, without '+'.")
    bsuid = fields.Char(
        "Business-Scoped User ID", index="btree_not_null",
        help="Meta's id for a user who shares a username instead of a phone number.")
    profile_name = fields.Char(help="The name the user set in WhatsApp.")
    state = fields.Selection([("open", "Open"), ("closed", "Closed")], required=True, default="open")
    last_message_at = fields.Datetime(readonly=True, index=True)
    last_inbound_at = fields.Datetime("Last Message From Contact", readonly=True)
    window_open = fields.Boolean(
        "Reply Window Open", compute="_compute_window", search="_search_window_open",
        help="WhatsApp allows free text for 24 hours after the contact's last message; "
             "outside it only approved templates can be sent.")
    window_expires_at = fields.Datetime("Reply Window Closes", compute="_compute_window")
    message_ids = fields.One2many("strato.whatsapp.message", "conversation_id")
    unread_count = fields.Integer(compute="_compute_unread_count", store=True)

    _sql_constraints = [
        ("account_wa_id_uniq", "unique(account_id, wa_id)",
         "There is already a conversation with this WhatsApp number on this account."),
        ("account_bsuid_uniq", "unique(account_id, bsuid)",
         "There is already a conversation with this WhatsApp user on this account."),
        ("wa_id_or_bsuid", "CHECK(wa_id IS NOT NULL OR bsuid IS NOT NULL)",
         "A conversation needs a WhatsApp number or a business-scoped user id."),
    ]

    @api.depends("lead_id", "profile_name", "wa_id", "bsuid")
    def _compute_display_name(self):
        for conversation in self:
            contact = conversation.lead_id.display_name or conversation.profile_name
            number = phone.format_international("+" + conversation.wa_id) if conversation.wa_id else conversation.bsuid
            conversation.display_name = f"{contact} ({number})" if contact else number

    @api.depends("last_inbound_at")
    def _compute_window(self):
        now = fields.Datetime.now()
        for conversation in self:
            expires = conversation.last_inbound_at and conversation.last_inbound_at + SERVICE_WINDOW
            conversation.window_expires_at = expires
            conversation.window_open = bool(expires and expires > now)

    def _search_window_open(self, operator, value):
        if operator not in ("=", "!="):
            raise NotImplementedError(_("Unsupported search on the reply window: %s", operator))
        is_open = (operator == "=") == bool(value)
        threshold = fields.Datetime.now() - SERVICE_WINDOW
        if is_open:
            return [("last_inbound_at", ">", threshold)]
        return ["|", ("last_inbound_at", "=", False), ("last_inbound_at", "<=", threshold)]

    @api.depends("message_ids.is_read")
    def _compute_unread_count(self):
        counts = dict(self.env["strato.whatsapp.message"]._read_group(
            [("conversation_id", "in", self.ids), ("direction", "=", "inbound"), ("is_read", "=", False)],
            ["conversation_id"], ["__count"]))
        for conversation in self:
            conversation.unread_count = counts.get(conversation, 0)

    def action_mark_read(self):
        """Mark the inbound messages of these conversations as read by the agent."""
        unread = self.env["strato.whatsapp.message"].search([
            ("conversation_id", "in", self.ids), ("direction", "=", "inbound"), ("is_read", "=", False)])
        unread.write({"is_read": True})

    def action_open_lead(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "crm.lead",
            "res_id": self.lead_id.id,
            "views": [(False, "form")],
        }
