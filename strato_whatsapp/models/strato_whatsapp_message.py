from odoo import api, fields, models

MESSAGE_TYPES = [
    ("text", "Text"),
    ("image", "Image"),
    ("video", "Video"),
    ("audio", "Audio"),
    ("document", "Document"),
    ("sticker", "Sticker"),
    ("location", "Location"),
    ("contacts", "Contacts"),
    ("interactive", "Interactive"),
    ("button", "Button Reply"),
    ("reaction", "Reaction"),
    ("template", "Template"),
    ("order", "Order"),
    ("system", "System"),
    ("unsupported", "Unsupported"),
]

MESSAGE_STATES = [
    ("queued", "Queued"),
    ("sending", "Sending"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("read", "Read"),
    ("failed", "Failed"),
    ("received", "Received"),
    ("unknown", "Outcome Unknown"),
]


class StratoWhatsappMessage(models.Model):
    """One WhatsApp message, received or sent, and where it stands."""

    _name = "strato.whatsapp.message"
    _description = "WhatsApp Message"
    _order = "message_at desc, id desc"
    _rec_name = "body"

    conversation_id = fields.Many2one(
        "strato.whatsapp.conversation", required=True, ondelete="cascade", index=True)
    lead_id = fields.Many2one(
        "crm.lead", ondelete="set null", index="btree_not_null",
        help="The lead the conversation belonged to when the message was exchanged.")
    account_id = fields.Many2one(related="conversation_id.account_id", store=True, index=True)
    company_id = fields.Many2one(related="conversation_id.company_id", store=True, index=True)
    author_id = fields.Many2one(
        "res.users", "Sent By", ondelete="set null", help="The user who wrote an outbound message.")
    direction = fields.Selection(
        [("inbound", "Received"), ("outbound", "Sent")], required=True, index=True)
    message_type = fields.Selection(MESSAGE_TYPES, "Type", required=True, default="text")
    body = fields.Text()
    message_at = fields.Datetime(
        "Date", required=True, default=fields.Datetime.now, index=True,
        help="When the contact sent it (inbound) or when it was written (outbound).")
    media_id = fields.Char("Meta Media ID", copy=False)
    media_mime_type = fields.Char("Media Type")
    media_filename = fields.Char("File Name")
    attachment_ids = fields.Many2many(
        "ir.attachment", "strato_whatsapp_message_attachment_rel", "message_id", "attachment_id",
        string="Attachments")
    template_id = fields.Many2one("strato.whatsapp.template", ondelete="restrict", index="btree_not_null")
    wamid = fields.Char("WhatsApp Message ID", copy=False, readonly=True, index="btree_not_null")
    reply_to_wamid = fields.Char("Replies To", copy=False, help="The WhatsApp message this one quotes.")
    state = fields.Selection(MESSAGE_STATES, required=True, default="queued", index=True, copy=False)
    is_read = fields.Boolean(
        "Read by Agent", default=False, help="For received messages: an agent has seen it.")
    sent_at = fields.Datetime(readonly=True, copy=False)
    delivered_at = fields.Datetime(readonly=True, copy=False)
    read_at = fields.Datetime(readonly=True, copy=False)
    failed_at = fields.Datetime(readonly=True, copy=False)
    error_code = fields.Integer("Error Code", readonly=True, copy=False, help="Meta's error code.")
    error_message = fields.Text(readonly=True, copy=False)
    attempt_count = fields.Integer("Attempts", readonly=True, copy=False)
    next_attempt_at = fields.Datetime("Next Attempt", readonly=True, copy=False)

    _sql_constraints = [
        ("account_wamid_uniq", "unique(account_id, wamid)", "This WhatsApp message is already stored."),
    ]

    @api.model_create_multi
    def create(self, vals_list):
        conversation_ids = {vals["conversation_id"] for vals in vals_list if not vals.get("lead_id")}
        lead_by_conversation = {
            conversation.id: conversation.lead_id.id
            for conversation in self.env["strato.whatsapp.conversation"].browse(conversation_ids)}
        for vals in vals_list:
            if not vals.get("lead_id"):
                vals["lead_id"] = lead_by_conversation.get(vals["conversation_id"], False)
        return super().create(vals_list)
