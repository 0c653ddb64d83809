import logging
import re

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..tools import webhook

_logger = logging.getLogger(__name__)

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


# Meta's template statuses (API and webhook events) -> ours.
META_TEMPLATE_STATUS = {
    "APPROVED": "approved",
    "PENDING": "pending",
    "IN_APPEAL": "pending",
    "REJECTED": "rejected",
    "PAUSED": "paused",
    "DISABLED": "disabled",
    "PENDING_DELETION": "disabled",
    "DELETED": "disabled",
    "ARCHIVED": "disabled",
    "LIMIT_EXCEEDED": "disabled",
}


PLACEHOLDER = re.compile(r"{{\s*([A-Za-z0-9_]+)\s*}}")


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
    parameter_format = fields.Selection(
        [("POSITIONAL", "Numbered ({{1}})"), ("NAMED", "Named ({{first_name}})")],
        required=True, default="POSITIONAL")
    header_text = fields.Char("Header", help="Optional text header; may hold one placeholder.")
    footer_text = fields.Char("Footer")
    variable_ids = fields.One2many("strato.whatsapp.template.variable", "template_id", "Variables", copy=True)
    rejected_reason = fields.Char(readonly=True, copy=False)
    quality_score = fields.Selection(
        [("GREEN", "High"), ("YELLOW", "Medium"), ("RED", "Low"), ("UNKNOWN", "Unknown")],
        readonly=True, copy=False, help="Meta's quality rating, from recipients' feedback.")

    _sql_constraints = [
        ("name_language_account_uniq", "unique(account_id, name, language)",
         "A template with this name and language already exists for this WhatsApp account."),
    ]

    @api.depends("name", "language")
    def _compute_display_name(self):
        for template in self:
            template.display_name = f"{template.name} ({template.language})" if template.name else ""

    @api.model
    def _apply_meta_events(self, account, events):
        """Apply template webhooks (status, quality and category updates) to the templates they name."""
        accounts = self.env["strato.whatsapp.account"].sudo().search([
            ("business_account_id", "in", list({event.waba_id for event in events if event.waba_id}))]) or account
        templates = self.with_context(active_test=False).search([
            ("account_id", "in", accounts.ids),
            ("meta_template_id", "in", [event.template_id for event in events])])
        by_meta_id = {}
        for template in templates:
            by_meta_id.setdefault(template.meta_template_id, self.browse())
            by_meta_id[template.meta_template_id] |= template
        for event in events:
            matched = by_meta_id.get(event.template_id)
            if not matched:
                _logger.info("WhatsApp template event for unknown template %s (%s)", event.template_id, event.name)
                continue
            matched.write(self._meta_event_values(event))

    @api.model
    def _meta_event_values(self, event):
        if isinstance(event, webhook.TemplateStatusUpdate):
            status = META_TEMPLATE_STATUS.get(event.event)
            values = {"rejected_reason": (event.reason if event.reason and event.reason != "NONE" else False)}
            if status:
                values["status"] = status
            return values
        if isinstance(event, webhook.TemplateQualityUpdate):
            return {"quality_score": event.new_quality_score if event.new_quality_score in
                    dict(self._fields["quality_score"].selection) else "UNKNOWN"}
        return {"category": event.new_category} if event.new_category in dict(TEMPLATE_CATEGORIES) else {}

    # ------------------------------------------------------------------
    # Placeholders and rendering
    # ------------------------------------------------------------------
    @api.model
    def _placeholders(self, text):
        seen = []
        for name in PLACEHOLDER.findall(text or ""):
            if name not in seen:
                seen.append(name)
        return seen

    def _sync_variables(self):
        """Create a variable for each placeholder of the header and body, drop the ones gone."""
        for template in self:
            wanted = {("header", name) for name in template._placeholders(template.header_text)}
            wanted |= {("body", name) for name in template._placeholders(template.body)}
            existing = {(variable.component, variable.name): variable
                        for variable in template.variable_ids.filtered(lambda v: v.component != "button")}
            (template.variable_ids.browse([v.id for key, v in existing.items() if key not in wanted])).unlink()
            template.variable_ids = [(0, 0, {"component": component, "name": name, "source": "field",
                                             "field_path": "contact_name" if name in ("1", "first_name", "name") else "partner_name"})
                                     for component, name in sorted(wanted - set(existing))]

    @api.model_create_multi
    def create(self, vals_list):
        templates = super().create(vals_list)
        templates._sync_variables()
        return templates

    def write(self, vals):
        result = super().write(vals)
        if "body" in vals or "header_text" in vals:
            self._sync_variables()
        return result

    def _values_for(self, lead, component):
        variables = self.variable_ids.filtered(lambda variable: variable.component == component)
        return {variable.name: variable._value_for(lead) for variable in variables}

    def _render_text(self, lead):
        """The header and body as the lead will read them."""
        self.ensure_one()
        parts = []
        for component, text in (("header", self.header_text), ("body", self.body), ("footer", self.footer_text)):
            if text:
                values = self._values_for(lead, component)
                parts.append(PLACEHOLDER.sub(lambda match: values.get(match[1]) or match[0], text))
        return "\n".join(parts)

    def _ready_to_send(self, client, template_object):
        """The stored ``template`` object of a queued message, completed at send time (outside any user
        transaction) with what needs the Graph API, such as header media ids."""
        self.ensure_one()
        return template_object

    def _components_for(self, lead):
        """Meta's ``template.components`` for ``lead``: header and body parameters in placeholder order."""
        self.ensure_one()
        components = []
        for component, text in (("header", self.header_text), ("body", self.body)):
            names = self._placeholders(text)
            if not names:
                continue
            values = self._values_for(lead, component)
            missing = [name for name in names if not values.get(name)]
            if missing:
                raise UserError(_("Template %(template)s: no value for {{%(names)s}} on %(lead)s; set a fallback.",
                                  template=self.name, names="}}, {{".join(missing), lead=lead.display_name))
            parameters = []
            for name in names:
                parameter = {"type": "text", "text": values[name]}
                if self.parameter_format == "NAMED":
                    parameter["parameter_name"] = name
                parameters.append(parameter)
            components.append({"type": component, "parameters": parameters})
        return components
