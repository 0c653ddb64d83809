from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

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
    field_path = fields.Char(
        "Lead Field", default="partner_name",
        help="A field of the lead, following relations with dots: contact_name, partner_id.city, user_id.name.")
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
        Lead = self.env["crm.lead"]
        for variable in self.filtered(lambda variable: variable.source == "field"):
            if not variable.field_path:
                raise ValidationError(_("Placeholder {{%s}} takes a lead field: name one.", variable.name))
            model = Lead
            for part in variable.field_path.split("."):
                field = model._fields.get(part)
                if field is None:
                    raise ValidationError(_("The lead has no field “%(path)s” (placeholder {{%(name)s}}).",
                                            path=variable.field_path, name=variable.name))
                model = self.env[field.comodel_name] if field.relational else model

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
        value = lead.sudo()
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
