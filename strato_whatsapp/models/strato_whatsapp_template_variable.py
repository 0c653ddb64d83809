from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

# The lead fields a placeholder may take: what the contact told us about themselves, and the names of
# the agency's company and team. Nothing beyond: a template is text sent to a customer, so a path into
# users, internal notes, revenue or other models could only leak (it used to be a free dotted path).
LEAD_FIELD_PATHS = [
    ("contact_name", "Contact Name"),
    ("partner_name", "Company Name"),
    ("title", "Title"),
    ("function", "Job Position"),
    ("partner_id.name", "Customer"),
    ("email_from", "Email"),
    ("phone", "Phone"),
    ("mobile", "Mobile"),
    ("street", "Street"),
    ("street2", "Street 2"),
    ("zip", "Zip"),
    ("city", "City"),
    ("state_id", "State"),
    ("country_id", "Country"),
    ("website", "Website"),
    ("team_id", "Sales Team"),
    ("company_id", "Company (the agency)"),
    ("id", "Lead Reference Number"),
]
SAFE_FIELD_PATHS = frozenset(path for path, _label in LEAD_FIELD_PATHS)

VARIABLE_SOURCES = [
    ("field", "Lead Field"),
    ("fixed", "Fixed Text"),
    ("salesperson", "Salesperson's Name"),
]


class StratoWhatsappTemplateVariable(models.Model):
    """What fills one placeholder of a template when it is sent to a lead."""

    _name = "strato.whatsapp.template.variable"
    _description = "WhatsApp Template Variable"
    _order = "template_id, component, button_id, sequence, id"

    template_id = fields.Many2one("strato.whatsapp.template", required=True, ondelete="cascade", index=True)
    component = fields.Selection(
        [("header", "Header"), ("body", "Body"), ("button", "Button")], required=True, default="body")
    button_id = fields.Many2one(
        "strato.whatsapp.template.button", "Button", ondelete="cascade", index="btree_not_null",
        help="For a button's variable: the website button ending with {{1}}, or the copy code button.")
    button_index = fields.Integer(
        compute="_compute_button_index", help="For a button's variable: the button's position, from 0.")
    name = fields.Char(
        "Placeholder", required=True, help="The number of a {{1}} placeholder, or the name of a {{first_name}} one.")
    sequence = fields.Integer(compute="_compute_sequence", store=True)
    source = fields.Selection(VARIABLE_SOURCES, required=True, default="field")
    field_path = fields.Selection(
        LEAD_FIELD_PATHS, "Lead Field", default="partner_name",
        help="The lead's field whose value fills the placeholder. Only fields about the contact (and the "
             "agency's company and team) are offered: the message goes to a customer.")
    fixed_value = fields.Char("Text")
    fallback = fields.Char(help="Sent when the value is empty, so the template still goes out.")
    sample = fields.Char("Example", help="An example value Meta reviewers see when the template is submitted.")

    _sql_constraints = [
        # Buttons are keyed by record, not position, so reordering them never collides.
        ("placeholder_uniq", "unique(template_id, component, button_id, name)",
         "Each placeholder is mapped once."),
    ]

    @api.depends("name")
    def _compute_sequence(self):
        for variable in self:
            variable.sequence = int(variable.name) if (variable.name or "").isdigit() else 1000

    @api.depends("button_id", "template_id.button_ids")
    def _compute_button_index(self):
        for variable in self:
            button = variable.button_id
            variable.button_index = button._position() if button and button.template_id else 0

    @api.constrains("template_id", "component", "name", "button_id")
    def _check_unique_placeholder(self):
        # The SQL constraint cannot see duplicates among header and body variables (no button: NULL).
        for variable in self:
            twins = variable.template_id.variable_ids.filtered(
                lambda other: (other.component, other.name, other.button_id) ==
                              (variable.component, variable.name, variable.button_id))
            if len(twins) > 1:
                raise ValidationError(_("Placeholder {{%s}} is mapped twice.", variable.name))

    @api.constrains("source", "field_path")
    def _check_field_path(self):
        for variable in self.filtered(lambda variable: variable.source == "field"):
            if not variable.field_path:
                raise ValidationError(_("Placeholder {{%s}} takes a lead field: name one.", variable.name))
            variable._check_safe_path()

    def _check_safe_path(self):
        # The selection refuses other values through the ORM; this also covers rows written by SQL or
        # kept from a version that took any path, wherever a value is read.
        if self.field_path not in SAFE_FIELD_PATHS:
            raise ValidationError(_("Placeholder {{%(name)s}} uses “%(path)s”, which is not a lead field a "
                                    "template may show.", name=self.name, path=self.field_path))

    def _value_for(self, lead):
        """The text this placeholder takes for ``lead`` (never empty when a fallback is set).
        Without a lead (a preview), the example value."""
        self.ensure_one()
        if not lead:
            return (self.sample or self.fallback or "").strip()
        if self.source == "fixed":
            value = self.fixed_value
        elif self.source == "salesperson":
            value = lead.user_id.name
        else:
            value = self._read_path(lead)
        return (value or self.fallback or "").strip()

    def _read_path(self, lead):
        """The field's value as text, read with the rights of ``lead``'s environment (the user who
        previews or sends, or the cron): a template never shows what its user could not read."""
        self._check_safe_path()
        value = lead
        for part in self.field_path.split("."):
            if not value:
                return ""
            value = value[:1][part]
        if isinstance(value, models.BaseModel):
            return value[:1].display_name or ""
        if value is False or value is None:
            return ""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)
