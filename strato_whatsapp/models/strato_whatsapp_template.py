from odoo import api, fields, models

TEMPLATE_CATEGORIES = [
    ("MARKETING", "Marketing"),
    ("UTILITY", "Utility"),
    ("AUTHENTICATION", "Authentication"),
]

TEMPLATE_STATUSES = [
    ("draft", "Draft"),
    ("pending", "Pending Review"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("paused", "Paused"),
    ("disabled", "Disabled"),
]


class StratoWhatsappTemplate(models.Model):
    """A message template: the only kind of message Meta lets a business start a conversation with."""

    _name = "strato.whatsapp.template"
    _description = "WhatsApp Message Template"
    _inherit = ["mail.thread"]
    _order = "name, language, id"

    name = fields.Char(
        required=True, tracking=True,
        help="Meta's template name: lowercase letters, digits and underscores.")
    active = fields.Boolean(default=True)
    account_id = fields.Many2one(
        "strato.whatsapp.account", required=True, ondelete="cascade", index=True, tracking=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True, index=True)
    language = fields.Char(required=True, default="es", tracking=True, help="Meta's language code, e.g. es, es_AR, en_US.")
    category = fields.Selection(TEMPLATE_CATEGORIES, required=True, default="MARKETING", tracking=True)
    status = fields.Selection(TEMPLATE_STATUSES, required=True, default="draft", tracking=True, copy=False)
    meta_template_id = fields.Char("Meta Template ID", copy=False, index=True, readonly=True)
    body = fields.Text(required=True, help="The message text; {{1}}, {{2}}... are filled when sending.")
    rejected_reason = fields.Char(readonly=True, copy=False)

    _sql_constraints = [
        ("name_language_account_uniq", "unique(account_id, name, language)",
         "A template with this name and language already exists for this WhatsApp account."),
    ]

    @api.depends("name", "language")
    def _compute_display_name(self):
        for template in self:
            template.display_name = f"{template.name} ({template.language})" if template.name else ""
