import re

from odoo import _, api, fields, models

BUTTON_TYPES = [
    ("quick_reply", "Quick Reply"),
    ("url", "Visit Website"),
    ("phone_number", "Call Phone Number"),
    ("copy_code", "Copy Offer Code"),
]
# Our button type -> Meta's, both ways.
META_BUTTON_TYPES = {
    "quick_reply": "QUICK_REPLY",
    "url": "URL",
    "phone_number": "PHONE_NUMBER",
    "copy_code": "COPY_CODE",
}
BUTTON_TYPES_FROM_META = {meta: ours for ours, meta in META_BUTTON_TYPES.items()}

# Meta's limits for template buttons.
BUTTON_TEXT_MAX = 25
BUTTON_URL_MAX = 2000
BUTTON_PHONE_MAX = 20
COPY_CODE_MAX = 15
URL_VARIABLE = "{{1}}"
PHONE_NUMBER = re.compile(r"^\+?[0-9][0-9 ]{5,19}$")


class StratoWhatsappTemplateButton(models.Model):
    """A button of a template: a quick reply, a website (static or ending with one variable), a phone
    number to call, or an offer code to copy. Meta addresses buttons by position, from 0."""

    _name = "strato.whatsapp.template.button"
    _description = "WhatsApp Template Button"
    _order = "template_id, sequence, id"

    template_id = fields.Many2one("strato.whatsapp.template", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer(default=10)
    button_type = fields.Selection(BUTTON_TYPES, "Type", required=True, default="quick_reply")
    text = fields.Char(
        "Label", help="What the button shows (up to 25 characters). Meta sets the label of copy code buttons.")
    url = fields.Char(
        "Website URL",
        help="A static address, or one ending with {{1}}: the end of the address is then filled for each lead.")
    phone_number = fields.Char(help="The number the button calls, with its country code, e.g. +34 600 000 000.")
    has_variable = fields.Boolean(
        compute="_compute_has_variable",
        help="The button takes a value when sent: a website ending with {{1}}, or the code to copy.")
    variable_ids = fields.One2many("strato.whatsapp.template.variable", "button_id", "Variable")

    @api.depends("button_type", "url")
    def _compute_has_variable(self):
        for button in self:
            button.has_variable = button.button_type == "copy_code" or (
                button.button_type == "url" and URL_VARIABLE in (button.url or ""))

    @api.depends("button_type", "text")
    def _compute_display_name(self):
        labels = dict(self._fields["button_type"]._description_selection(self.env))
        for button in self:
            button.display_name = button.text or labels.get(button.button_type) or ""

    @api.model_create_multi
    def create(self, vals_list):
        buttons = super().create(vals_list)
        buttons.template_id._sync_variables_unless_deferred()
        return buttons

    def write(self, vals):
        templates = self.template_id
        result = super().write(vals)
        if {"button_type", "url", "template_id"} & set(vals):
            (templates | self.template_id)._sync_variables_unless_deferred()
        return result

    def _position(self):
        """Meta's index of this button: its place among the template's buttons, from 0."""
        self.ensure_one()
        ids = self.template_id.button_ids.ids
        return ids.index(self.id) if self.id in ids else 0

    # ------------------------------------------------------------------
    # Meta's shapes
    # ------------------------------------------------------------------
    def _meta_definition(self):
        """This button as Meta's message_templates API creates it."""
        self.ensure_one()
        definition = {"type": META_BUTTON_TYPES[self.button_type]}
        if self.button_type != "copy_code":
            definition["text"] = self.text
        if self.button_type == "url":
            definition["url"] = self.url
            if self.has_variable:
                definition["example"] = [self.url.replace(URL_VARIABLE, self._variable().sample or "")]
        elif self.button_type == "phone_number":
            definition["phone_number"] = self.phone_number
        elif self.button_type == "copy_code":
            definition["example"] = self._variable().sample
        return definition

    def _send_component(self, value):
        """Meta's send-time ``button`` component carrying ``value`` for this button."""
        self.ensure_one()
        if self.button_type == "copy_code":
            parameter = {"type": "coupon_code", "coupon_code": value}
        else:
            parameter = {"type": "text", "text": value}
        return {"type": "button", "sub_type": self.button_type, "index": str(self._position()),
                "parameters": [parameter]}

    def _variable(self):
        return self.variable_ids[:1]

    @api.model
    def _values_from_meta(self, definition):
        """Our values for one of Meta's template button objects, or None for a kind we do not handle."""
        button_type = BUTTON_TYPES_FROM_META.get(str(definition.get("type", "")).upper())
        if not button_type:
            return None
        return {
            "button_type": button_type,
            "text": definition.get("text") or False,
            "url": definition.get("url") or False,
            "phone_number": definition.get("phone_number") or False,
        }

    @api.model
    def _sample_from_meta(self, definition):
        """The example value Meta holds for a button's variable (the end of the URL, or the code)."""
        example = definition.get("example")
        if isinstance(example, list):
            example = example[0] if example else None
        if not isinstance(example, str):
            return False
        url = definition.get("url") or ""
        prefix = url.split(URL_VARIABLE)[0] if URL_VARIABLE in url else ""
        return example[len(prefix):] if prefix and example.startswith(prefix) else example

    # ------------------------------------------------------------------
    # Validation before submission
    # ------------------------------------------------------------------
    def _problems(self):
        """Plain-language reasons Meta would refuse this button, as a list."""
        self.ensure_one()
        label = self.display_name
        problems = []
        if self.button_type != "copy_code":
            if not self.text:
                kind = dict(self._fields["button_type"]._description_selection(self.env))[self.button_type]
                problems.append(_("A “%s” button needs a label.", kind))
            elif len(self.text) > BUTTON_TEXT_MAX:
                problems.append(_("Button “%(label)s”: labels have at most %(max)s characters.",
                                  label=label, max=BUTTON_TEXT_MAX))
        checker = getattr(self, f"_{self.button_type}_problems", None)
        return problems + (checker() if checker else [])

    def _url_problems(self):
        url = self.url or ""
        if not re.match(r"^https?://[^\s/]+", url):
            return [_("Button “%s”: the website address must start with https://.", self.display_name)]
        if len(url) > BUTTON_URL_MAX:
            return [_("Button “%(label)s”: the address has more than %(max)s characters.",
                      label=self.display_name, max=BUTTON_URL_MAX)]
        placeholders = re.findall(r"{{[^}]*}}", url)
        if placeholders and (placeholders != [URL_VARIABLE] or not url.endswith(URL_VARIABLE)):
            return [_("Button “%s”: a website address may only end with {{1}}, once.", self.display_name)]
        if self.has_variable and not self._variable().sample:
            return [_("Button “%s”: give an example for the end of the address.", self.display_name)]
        return []

    def _phone_number_problems(self):
        if not PHONE_NUMBER.match(self.phone_number or "") or len(self.phone_number) > BUTTON_PHONE_MAX:
            return [_("Button “%s”: give the phone number with its country code, e.g. +34 600 000 000.",
                      self.display_name)]
        return []

    def _copy_code_problems(self):
        sample = self._variable().sample or ""
        if not sample:
            return [_("The copy code button needs an example code.")]
        if len(sample) > COPY_CODE_MAX:
            return [_("The copy code example has more than %s characters.", COPY_CODE_MAX)]
        return []
