import base64
import logging
import mimetypes
import re
import unicodedata
from collections import Counter
from datetime import timedelta

from markupsafe import Markup, escape

from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools.mimetypes import guess_mimetype

from ..tools import graph_errors, webhook

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

HEADER_TYPES = [
    ("none", "None"),
    ("text", "Text"),
    ("image", "Image"),
    ("video", "Video"),
    ("document", "Document"),
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
META_HEADER_FORMATS = {"text": "TEXT", "image": "IMAGE", "video": "VIDEO", "document": "DOCUMENT"}
HEADER_TYPES_FROM_META = {meta: ours for ours, meta in META_HEADER_FORMATS.items()}
META_TEMPLATE_FIELDS = "id,name,language,status,category,parameter_format,components,quality_score,rejected_reason"
SYNC_PAGE_SIZE = 100
# Authentication templates carry no body text: Meta writes it.
AUTHENTICATION_BODY = "*{{1}}* is your verification code."

PLACEHOLDER = re.compile(r"{{\s*([A-Za-z0-9_]+)\s*}}")
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
NAMED_PARAMETER = re.compile(r"^[a-z][a-z0-9_]*$")

# Meta's limits.
BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_MAX = 60
BUTTONS_MAX = 10
BUTTONS_MAX_BY_TYPE = {"url": 2, "phone_number": 1, "copy_code": 1}
# Media header: accepted types and size, per kind.
HEADER_MEDIA = {
    "image": (("image/jpeg", "image/png"), 5 * 1024 * 1024),
    "video": (("video/mp4", "video/3gpp"), 16 * 1024 * 1024),
    "document": (("application/pdf",), 100 * 1024 * 1024),
}
# Uploaded media ids live 30 days at Meta; renew a day early.
MEDIA_ID_LIFETIME = timedelta(days=29)
WHATSAPP_STYLES = ((r"\*([^*\n]+)\*", "b"), (r"_([^_\n]+)_", "i"), (r"~([^~\n]+)~", "s"))


def _components_by_type(data):
    return {str(component.get("type", "")).upper(): component for component in data.get("components") or ()
            if isinstance(component, dict)}


def _selection_labels(records, fname):
    """{value: translated label} of a selection field."""
    return dict(records._fields[fname]._description_selection(records.env))


def _whatsapp_markup(text):
    """``text`` escaped, with WhatsApp's *bold*, _italic_ and ~strikethrough~ shown."""
    html = str(escape(text or ""))
    for pattern, tag in WHATSAPP_STYLES:
        html = re.sub(pattern, rf"<{tag}>\1</{tag}>", html)
    return Markup(html.replace("\n", "<br/>"))


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
        "strato.whatsapp.account", ondelete="cascade", index=True, tracking=True,
        help="The WhatsApp number the template belongs to. Needed to submit it to Meta and to send it.")
    company_id = fields.Many2one(
        "res.company", compute="_compute_company_id", store=True, precompute=True, index=True)
    language = fields.Char(required=True, default="es", tracking=True, help="Meta's language code, e.g. es, es_AR, en_US.")
    category = fields.Selection(TEMPLATE_CATEGORIES, required=True, default="MARKETING", tracking=True)
    status = fields.Selection(TEMPLATE_STATUSES, required=True, default="draft", tracking=True, copy=False)
    meta_template_id = fields.Char("Meta Template ID", copy=False, index=True, readonly=True)
    meta_missing = fields.Boolean(
        "Deleted at Meta", readonly=True, copy=False,
        help="The last sync did not find this template at Meta any more: it cannot be sent.")
    body = fields.Text(required=True, help="The message text; {{1}}, {{2}}... are filled when sending.")
    parameter_format = fields.Selection(
        [("POSITIONAL", "Numbered ({{1}})"), ("NAMED", "Named ({{first_name}})")],
        required=True, default="POSITIONAL")
    header_type = fields.Selection(HEADER_TYPES, required=True, default="none")
    header_text = fields.Char("Header", help="A text header; may hold one placeholder.")
    header_file = fields.Binary(
        "Header File", attachment=True, copy=False,
        help="The image (JPEG, PNG), video (MP4) or document (PDF) sent on top of the message. Meta's reviewers "
             "see it as the example.")
    header_file_name = fields.Char("Header File Name", copy=False)
    header_media_link = fields.Char(
        "Header File URL",
        help="Optional: a public https address WhatsApp downloads the header file from when sending. Without "
             "it the file is uploaded to Meta once and reused for 30 days.")
    header_media_id = fields.Char(readonly=True, copy=False)
    header_media_uploaded_at = fields.Datetime(readonly=True, copy=False)
    header_media_phone_number_id = fields.Char(readonly=True, copy=False)
    footer_text = fields.Char("Footer")
    button_ids = fields.One2many("strato.whatsapp.template.button", "template_id", "Buttons", copy=True)
    variable_ids = fields.One2many("strato.whatsapp.template.variable", "template_id", "Variables", copy=True)
    rejected_reason = fields.Char(readonly=True, copy=False, help="Meta's code for why it rejected the template.")
    rejected_reason_text = fields.Char("Why Meta Rejected It", compute="_compute_rejected_reason_text")
    quality_score = fields.Selection(
        [("GREEN", "High"), ("YELLOW", "Medium"), ("RED", "Low"), ("UNKNOWN", "Unknown")],
        readonly=True, copy=False, help="Meta's quality rating, from recipients' feedback.")
    preview_lead_id = fields.Many2one(
        "crm.lead", "Preview For", copy=False, ondelete="set null",
        help="Show the message as this lead would receive it. Without a lead the examples are shown.")
    preview_text = fields.Text(compute="_compute_preview")
    preview_html = fields.Html("Preview", compute="_compute_preview")

    _sql_constraints = [
        ("name_language_account_uniq", "unique(account_id, name, language)",
         "A template with this name and language already exists for this WhatsApp account."),
    ]

    @api.depends("rejected_reason")
    def _compute_rejected_reason_text(self):
        reasons = {
            "ABUSIVE_CONTENT": _("Meta considers the content abusive or against its policies. Write it again "
                                 "in a neutral tone and submit it as a new template."),
            "INCORRECT_CATEGORY": _("The category does not match the content (for example, a promotion filed "
                                    "as Utility). Choose the right category and submit it again."),
            "INVALID_FORMAT": _("The format is not valid: check the variables ({{1}}, {{2}}... in order, not "
                                "at the very start or end, not next to each other) and the examples."),
            "PROMOTIONAL": _("Meta sees promotional content in a template that is not Marketing: file it as "
                             "Marketing, or remove the promotion."),
            "SCAM": _("Meta suspects the content could be used to deceive people. Make the sender and the "
                      "purpose clear, and submit it again."),
            "TAG_CONTENT_MISMATCH": _("The category or language does not match the content. Check both and "
                                      "submit it again."),
        }
        for template in self:
            code = template.rejected_reason
            template.rejected_reason_text = code and reasons.get(code, _(
                "Meta gave the reason %s. See Meta's template guidelines, correct it and submit it again.", code))

    @api.depends("name", "language")
    def _compute_display_name(self):
        for template in self:
            template.display_name = f"{template.name} ({template.language})" if template.name else ""

    @api.depends("account_id.company_id")
    def _compute_company_id(self):
        # A draft without an account (e.g. the one shipped as data) stays with the company that made it.
        for template in self:
            template.company_id = template.account_id.company_id or template.company_id or self.env.company

    @api.depends("preview_lead_id", "body", "header_type", "header_text", "footer_text", "button_ids.text",
                 "button_ids.button_type", "variable_ids.source", "variable_ids.field_path",
                 "variable_ids.fixed_value", "variable_ids.fallback", "variable_ids.sample")
    def _compute_preview(self):
        for template in self:
            # The preview is what the user asks to see: a lead they cannot read shows the examples only
            # (an onchange may name any lead id).
            lead = template.preview_lead_id._origin
            if lead and not lead.has_access("read"):
                lead = lead.browse()
            template.preview_text = template._render_text(lead)
            template.preview_html = template._preview_bubble(lead)

    @api.constrains("account_id", "status")
    def _check_account(self):
        if self.filtered(lambda template: not template.account_id and template.status != "draft"):
            raise ValidationError(_("Only a draft template can be without a WhatsApp account: choose the number "
                                    "the template belongs to."))

    def onchange(self, values, field_names, fields_spec):
        # Odoo's onchange checks no access right by itself, and the form's preview renders leads: only
        # users who may read templates get an answer.
        self.browse().check_access("read")
        lead_id = values.get("preview_lead_id")
        if isinstance(lead_id, int) and not self.env["crm.lead"].browse(lead_id).exists().has_access("read"):
            values = dict(values, preview_lead_id=False)  # not even its name comes back
        return super().onchange(values, field_names, fields_spec)

    @api.onchange("name")
    def _onchange_name(self):
        if self.name and not TEMPLATE_NAME.match(self.name):
            # "Confirmación visita" -> "confirmacion_visita": accents dropped, not turned into underscores.
            plain = unicodedata.normalize("NFKD", self.name.strip().lower())
            plain = "".join(char for char in plain if not unicodedata.combining(char))
            self.name = re.sub(r"[^a-z0-9_]+", "_", plain).strip("_")

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("header_text") and not vals.get("header_type"):
                vals["header_type"] = "text"
        # Variables are synced once everything (buttons, given variables) is written, not midway.
        deferred = self.with_context(strato_whatsapp_defer_variables=True)
        templates = super(StratoWhatsappTemplate, deferred).create(vals_list).with_env(self.env)
        templates._sync_variables()
        return templates

    def write(self, vals):
        if vals.get("preview_lead_id"):
            # A preview shows the lead's data: only a lead the user can read.
            self.env["crm.lead"].browse(vals["preview_lead_id"]).check_access("read")
        if {"header_file", "header_media_link"} & set(vals):
            vals = dict(vals, header_media_id=False, header_media_uploaded_at=False, header_media_phone_number_id=False)
        deferred = self.with_context(strato_whatsapp_defer_variables=True)
        result = super(StratoWhatsappTemplate, deferred).write(vals)
        if {"body", "header_text", "header_type", "button_ids"} & set(vals):
            self._sync_variables()
        return result

    def copy_data(self, default=None):
        default = dict(default or {})
        vals_list = super().copy_data(default)
        if "name" not in default:
            for template, vals in zip(self, vals_list):
                vals["name"] = f"{template.name}_copy"
        return vals_list

    @api.model
    def _apply_meta_events(self, account, events):
        """Apply template webhooks (status, quality and category updates) to the templates they name."""
        # Only WABAs of the Meta app whose secret signed the webhook: another app's templates are not its own.
        # sudo: run by the webhook cron for a signed event; the secret is compared, never shown.
        secret = account.sudo().app_secret
        # sudo: the webhook cron finds the app's own WABAs by id; only their templates are touched.
        accounts = self.env["strato.whatsapp.account"].sudo().search([
            ("business_account_id", "in", list({event.waba_id for event in events if event.waba_id}))])
        accounts = accounts.filtered(lambda candidate: candidate.app_secret == secret) or account
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
    # Placeholders and variables
    # ------------------------------------------------------------------
    @api.model
    def _placeholders(self, text):
        seen = []
        for name in PLACEHOLDER.findall(text or ""):
            if name not in seen:
                seen.append(name)
        return seen

    def _ordered_placeholders(self, text):
        """Placeholders in Meta's parameter order: by number when numbered, else as they appear."""
        names = self._placeholders(text)
        if self.parameter_format == "POSITIONAL" and all(name.isdigit() for name in names):
            return sorted(names, key=int)
        return names

    def _header_placeholder_text(self):
        return self.header_text if self.header_type == "text" else ""

    def _wanted_variables(self):
        """{(component, button id, placeholder): defaults} for every value this template takes."""
        wanted = {}
        for component, text in (("header", self._header_placeholder_text()), ("body", self.body)):
            for name in self._placeholders(text):
                wanted[(component, False, name)] = {
                    "component": component, "name": name, "source": "field",
                    "field_path": "contact_name" if name in ("1", "first_name", "name") else "partner_name"}
        for button in self.button_ids.filtered("has_variable"):
            wanted[("button", button.id, "1")] = {
                "component": "button", "button_id": button.id, "name": "1", "source": "fixed"}
        return wanted

    def _sync_variables(self):
        """Create a variable for each placeholder of the header, body and buttons; drop the ones gone."""
        for template in self:
            wanted = template._wanted_variables()
            existing = {(variable.component, variable.button_id.id, variable.name): variable
                        for variable in template.variable_ids}
            template.variable_ids.filtered(lambda variable: (
                variable.component, variable.button_id.id, variable.name) not in wanted).unlink()
            missing = [dict(defaults, template_id=template.id)
                       for key, defaults in wanted.items() if key not in existing]
            if missing:
                self.env["strato.whatsapp.template.variable"].create(missing)

    def _sync_variables_unless_deferred(self):
        # Inside the template's own create/write, the template syncs once at the end.
        if not self.env.context.get("strato_whatsapp_defer_variables"):
            self._sync_variables()

    def _values_for(self, lead, component):
        variables = self.variable_ids.filtered(lambda variable: variable.component == component)
        return {variable.name: variable._value_for(lead) for variable in variables}

    # ------------------------------------------------------------------
    # Rendering and preview
    # ------------------------------------------------------------------
    def _render_parts(self, lead):
        """Header, body and footer as ``lead`` will read them (examples when no lead); placeholders
        without a value are left as they are, so they show."""
        self.ensure_one()

        def fill(component, text):
            values = self._values_for(lead, component)
            return PLACEHOLDER.sub(lambda match: values.get(match[1]) or match[0], text or "")

        return {"header": fill("header", self._header_placeholder_text()), "body": fill("body", self.body),
                "footer": self.footer_text or ""}

    def _render_text(self, lead):
        """The header and body as the lead will read them."""
        parts = self._render_parts(lead)
        return "\n".join(part for part in (parts["header"], parts["body"], parts["footer"]) if part)

    def _preview_bubble(self, lead):
        """The message as a WhatsApp bubble (HTML), for the template form."""
        self.ensure_one()
        parts = self._render_parts(lead)
        html = Markup()
        if self.header_type in HEADER_MEDIA:
            label = _selection_labels(self, "header_type")[self.header_type]
            html += Markup('<div class="text-muted border rounded p-3 mb-1 text-center">%s</div>') % (
                self.header_file_name or label)
        elif parts["header"]:
            html += Markup('<div class="fw-bold mb-1">%s</div>') % parts["header"]
        html += Markup('<div>%s</div>') % _whatsapp_markup(parts["body"])
        if parts["footer"]:
            html += Markup('<div class="text-muted small mt-1">%s</div>') % parts["footer"]
        for button in self.button_ids:
            html += Markup('<div class="border-top text-center text-primary mt-1 pt-1">%s</div>') % button.display_name
        return Markup('<div class="bg-success-subtle rounded p-2 shadow-sm">%s</div>') % html

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------
    def _check_sendable(self):
        self.ensure_one()
        if not self.account_id:
            raise UserError(_("Template %s has no WhatsApp account: choose the number it belongs to.",
                              self.display_name))
        if self.header_type in HEADER_MEDIA and not (self.header_file or self.header_media_link):
            raise UserError(_("Template %s has a media header: add its file (or its address) before sending.",
                              self.display_name))

    def _components_for(self, lead):
        """Meta's ``template.components`` for ``lead``: header and body parameters in Meta's order, then
        button parameters by button index. A media header is added at send time (``_ready_to_send``)."""
        self._check_sendable()
        components, missing = [], []
        for component, text in (("header", self._header_placeholder_text()), ("body", self.body)):
            names = self._ordered_placeholders(text)
            if not names:
                continue
            values = self._values_for(lead, component)
            missing += [f"{{{{{name}}}}}" for name in names if not values.get(name)]
            components.append({"type": component, "parameters": [
                self._text_parameter(name, values.get(name)) for name in names]})
        for button in self.button_ids.filtered("has_variable"):
            value = button._variable()._value_for(lead) if button._variable() else ""
            if not value:
                missing.append(_("the value of button “%s”", button.display_name))
            components.append(button._send_component(value))
        if missing:
            raise UserError(_("Template %(template)s: no value for %(names)s on %(lead)s; set a fallback.",
                              template=self.name, names=", ".join(missing), lead=lead.display_name))
        return components

    def _text_parameter(self, name, value):
        parameter = {"type": "text", "text": value}
        if self.parameter_format == "NAMED":
            parameter["parameter_name"] = name
        return parameter

    def _ready_to_send(self, client, template_object):
        """The stored ``template`` object of a queued message, completed at send time (outside any user
        transaction) with what needs the Graph API: the media header, by link or by a media id uploaded
        once and reused while Meta keeps it (30 days)."""
        self.ensure_one()
        if self.header_type not in HEADER_MEDIA:
            return template_object
        components = list(template_object.get("components") or [])
        if any(component.get("type") == "header" for component in components):
            return template_object
        header = {"type": "header", "parameters": [
            {"type": self.header_type, self.header_type: self._header_media_object(client)}]}
        return dict(template_object, components=[header] + components)

    def _header_media_object(self, client):
        media = {"link": self.header_media_link} if self.header_media_link else {"id": self._header_media_id(client)}
        if self.header_type == "document" and self.header_file_name:
            media["filename"] = self.header_file_name
        return media

    def _header_media_id(self, client):
        # Called at send time (cron) or on a submission by an administrator.
        # sudo: the cached media id fields are the queue's own, never the caller's to write.
        template = self.sudo()
        if (template.header_media_id and template.header_media_phone_number_id == client.phone_number_id
                and template.header_media_uploaded_at
                and template.header_media_uploaded_at > fields.Datetime.now() - MEDIA_ID_LIFETIME):
            return template.header_media_id
        content, mimetype, filename = template._header_file()
        if not content:
            raise graph_errors.TemplateError(
                _("Template %s has a media header but no file to send.", template.display_name), retryable=False)
        media_id = (client.upload_media(content, mimetype, filename) or {}).get("id")
        if not media_id:
            raise graph_errors.MediaError("The Graph API returned no media id for the template header")
        template.write({"header_media_id": media_id, "header_media_uploaded_at": fields.Datetime.now(),
                        "header_media_phone_number_id": client.phone_number_id})
        return media_id

    def _header_file(self):
        """(bytes, mime type, file name) of the header file, or (None, None, None)."""
        data = self.with_context(bin_size=False).header_file
        if not data:
            return None, None, None
        content = base64.b64decode(data)
        filename = self.header_file_name or f"header.{self.header_type}"
        mimetype = mimetypes.guess_type(filename)[0] or guess_mimetype(content)
        return content, mimetype, filename

    # ------------------------------------------------------------------
    # Validation before submission
    # ------------------------------------------------------------------
    def _check_submittable(self):
        """Raise a ``UserError`` listing, in plain words, everything Meta would refuse."""
        for template in self:
            problems = template._submission_problems()
            if problems:
                raise UserError(_("Template %(name)s cannot be submitted yet:\n%(problems)s",
                                  name=template.name, problems="\n".join(f"• {problem}" for problem in problems)))

    def _submission_problems(self):
        self.ensure_one()
        return (self._account_problems() + self._name_problems() + self._text_problems()
                + self._placeholder_problems() + self._example_problems() + self._header_problems()
                + self._button_problems())

    def _account_problems(self):
        problems = []
        if not self.account_id:
            problems.append(_("Choose the WhatsApp account the template belongs to."))
        elif not self.account_id.business_account_id:
            problems.append(_("The account %s has no WhatsApp Business Account ID: templates are created under it.",
                              self.account_id.name))
        if self.meta_template_id and self.status == "pending":
            problems.append(_("Meta is still reviewing this template: it can be changed once Meta approves or "
                              "rejects it."))
        if self.category == "AUTHENTICATION":
            problems.append(_("Authentication templates have a text set by Meta: create them in WhatsApp Manager, "
                              "then sync."))
        return problems

    def _name_problems(self):
        problems = []
        if not TEMPLATE_NAME.match(self.name or ""):
            problems.append(_("The name may only hold lowercase letters, digits and underscores, "
                              "e.g. bienvenida_inmobiliaria."))
        if not LANGUAGE_CODE.match(self.language or ""):
            problems.append(_("The language must be one of Meta's codes, e.g. es, es_AR or en_US."))
        return problems

    def _text_problems(self):
        problems = []
        body = (self.body or "").strip()
        if len(self.body or "") > BODY_MAX:
            problems.append(_("The body has %(length)s characters; Meta allows %(max)s.",
                              length=len(self.body), max=BODY_MAX))
        if PLACEHOLDER.match(body) or re.search(r"{{\s*[A-Za-z0-9_]+\s*}}$", body):
            problems.append(_("The body cannot start or end with a placeholder: add some words around it."))
        if self.header_type == "text" and not self.header_text:
            problems.append(_("Write the header text, or choose no header."))
        if self.header_type == "text" and len(self.header_text or "") > HEADER_TEXT_MAX:
            problems.append(_("The header has more than %s characters.", HEADER_TEXT_MAX))
        if len(self.footer_text or "") > FOOTER_MAX:
            problems.append(_("The footer has more than %s characters.", FOOTER_MAX))
        if self._placeholders(self.footer_text):
            problems.append(_("The footer cannot hold placeholders."))
        return problems

    def _placeholder_problems(self):
        problems = []
        parts = ((_("header"), self._header_placeholder_text()), (_("body"), self.body))
        for label, text in parts:
            names = self._placeholders(text)
            if self.parameter_format == "POSITIONAL":
                problems += self._positional_problems(label, names)
            elif any(not NAMED_PARAMETER.match(name) for name in names):
                problems.append(_("Named placeholders of the %s use lowercase letters, digits and underscores, "
                                  "starting with a letter, e.g. {{first_name}}.", label))
        if len(self._placeholders(self._header_placeholder_text())) > 1:
            problems.append(_("A text header can hold only one placeholder."))
        return problems

    @api.model
    def _positional_problems(self, label, names):
        if any(not name.isdigit() for name in names):
            return [_("The %s uses named placeholders but the parameter format is Numbered: use {{1}}, {{2}}... "
                      "or choose Named.", label)]
        numbers = sorted(int(name) for name in names)
        if numbers != list(range(1, len(numbers) + 1)):
            return [_("Placeholders of the %(part)s must be numbered from {{1}} without gaps (found %(found)s).",
                      part=label, found=", ".join(f"{{{{{number}}}}}" for number in numbers))]
        return []

    def _example_problems(self):
        parts = _selection_labels(self.variable_ids, "component")
        return [_("Give an example for {{%(name)s}} of the %(part)s (Variables tab): Meta's reviewers need one.",
                  name=variable.name, part=parts[variable.component].lower())
                for variable in self.variable_ids
                if variable.component in ("header", "body") and not (variable.sample or "").strip()]

    def _header_problems(self):
        if self.header_type not in HEADER_MEDIA:
            return []
        label = _selection_labels(self, "header_type")[self.header_type]
        content, mimetype, _filename = self._header_file()
        if not content:
            return [_("A header of type %s needs an example file for Meta's review.", label)]
        allowed, max_size = HEADER_MEDIA[self.header_type]
        problems = []
        if mimetype not in allowed:
            problems.append(_("The header file is %(type)s; a header of type %(kind)s takes %(allowed)s.",
                              type=mimetype, kind=label, allowed=", ".join(allowed)))
        if len(content) > max_size:
            problems.append(_("The header file is larger than Meta accepts (%s MB).", max_size // (1024 * 1024)))
        if self.account_id and not self.account_id.app_id:
            problems.append(_("Set the Meta App ID on the account: example files are uploaded through the app."))
        return problems

    def _button_problems(self):
        buttons = self.button_ids
        counts = Counter(buttons.mapped("button_type"))
        labels = _selection_labels(buttons, "button_type")
        problems = []
        if len(buttons) > BUTTONS_MAX:
            problems.append(_("A template has at most %s buttons.", BUTTONS_MAX))
        for button_type, limit in BUTTONS_MAX_BY_TYPE.items():
            if counts[button_type] > limit:
                problems.append(_("A template has at most %(max)s “%(type)s” button(s).",
                                  max=limit, type=labels[button_type]))
        if counts["copy_code"] and self.category != "MARKETING":
            problems.append(_("Copy code buttons are only allowed in marketing templates."))
        quick_replies = [button_type == "quick_reply" for button_type in buttons.mapped("button_type")]
        if sum(1 for before, after in zip(quick_replies, quick_replies[1:]) if before != after) > 1:
            problems.append(_("Keep the quick replies together, before or after the other buttons."))
        for button in buttons:
            problems += button._problems()
        return problems

    # ------------------------------------------------------------------
    # Submission to Meta
    # ------------------------------------------------------------------
    def action_submit(self):
        """Submit the template to Meta for review, or its changes when it was submitted before."""
        self.ensure_one()
        self.check_access("write")  # before Meta is called: a refused write must not change Meta's side
        self._check_submittable()
        account = self.account_id
        client = account._graph_client()
        try:
            components = self._meta_components(client)
            if self.meta_template_id:
                client.edit_template(self.meta_template_id, self._edit_payload(components))
                values = {"status": "pending"}
            else:
                values = self._created_values(client.create_template(self._create_payload(components)))
        except graph_errors.GraphApiError as error:
            raise UserError(_("Meta did not accept template %(name)s. %(reason)s",
                              name=self.name, reason=account._explain_error(error))) from None
        self.write(dict(values, rejected_reason=False, meta_missing=False))
        self.message_post(body=_("Submitted to Meta for review."), subtype_xmlid="mail.mt_note")
        return True

    def _create_payload(self, components):
        return {"name": self.name, "language": self.language, "category": self.category,
                "parameter_format": self.parameter_format, "components": components}

    def _edit_payload(self, components):
        # Meta lets the category change only while the template is not approved.
        payload = {"components": components}
        if self.status == "rejected":
            payload["category"] = self.category
        return payload

    def _created_values(self, answer):
        values = {"meta_template_id": str(answer.get("id") or ""),
                  "status": META_TEMPLATE_STATUS.get(str(answer.get("status", "")).upper(), "pending")}
        if answer.get("category") in dict(TEMPLATE_CATEGORIES):
            values["category"] = answer["category"]  # Meta may recategorize on creation
        return values

    def _meta_components(self, client):
        """The template as Meta's message_templates API takes it, examples included (a media header's
        example goes through the resumable upload API first)."""
        components = []
        header = self._header_definition(client)
        if header:
            components.append(header)
        components.append(self._text_definition("BODY", "body", self.body))
        if self.footer_text:
            components.append({"type": "FOOTER", "text": self.footer_text})
        if self.button_ids:
            components.append({"type": "BUTTONS", "buttons": [button._meta_definition() for button in self.button_ids]})
        return components

    def _header_definition(self, client):
        if self.header_type == "text":
            return dict(self._text_definition("HEADER", "header", self.header_text), format="TEXT")
        if self.header_type not in HEADER_MEDIA:
            return None
        content, mimetype, filename = self._header_file()
        # sudo: action_submit checked write access first; the app id is administrators' configuration.
        handle = client.resumable_upload(self.account_id.sudo().app_id, content, mimetype, filename)
        return {"type": "HEADER", "format": META_HEADER_FORMATS[self.header_type],
                "example": {"header_handle": [handle]}}

    def _text_definition(self, meta_type, component, text):
        definition = {"type": meta_type, "text": text}
        names = self._ordered_placeholders(text)
        if not names:
            return definition
        samples = {variable.name: variable.sample for variable in self.variable_ids if variable.component == component}
        if self.parameter_format == "NAMED":
            definition["example"] = {f"{component}_text_named_params": [
                {"param_name": name, "example": samples.get(name)} for name in names]}
        else:
            values = [samples.get(name) for name in names]
            definition["example"] = {f"{component}_text": [values] if component == "body" else values}
        return definition

    def action_refresh_status(self):
        """Ask Meta for the current status, quality and rejection reason of these templates."""
        self.check_access("write")  # before Meta is called, as for a submission
        for template in self:
            if not template.meta_template_id:
                raise UserError(_("Template %s was never submitted to Meta.", template.display_name))
            template.write(template._fetch_status_values())
        return True

    def _fetch_status_values(self):
        account = self.account_id
        try:
            remote = account._graph_client().iter_templates(name=self.name, fields=META_TEMPLATE_FIELDS)
            found = [data for data in remote if str(data.get("id")) == self.meta_template_id]
        except graph_errors.GraphApiError as error:
            raise UserError(_("Could not ask Meta about template %(name)s. %(reason)s",
                              name=self.name, reason=account._explain_error(error))) from None
        return self._meta_status_values(found[0]) if found else {"meta_missing": True}

    # ------------------------------------------------------------------
    # Sync from Meta
    # ------------------------------------------------------------------
    @api.model
    def _cron_sync_templates(self):
        """Daily: bring every account's templates in line with Meta."""
        # sudo: the daily cron, no user behind it: every account's templates are synced.
        accounts = self.env["strato.whatsapp.account"].sudo().search([
            ("business_account_id", "!=", False), ("token_invalid", "=", False)])
        for account in accounts.filtered("access_token"):
            try:
                # sudo: the daily cron (see the search above), no user behind it.
                counts = self.sudo()._sync_account(account)
            except graph_errors.GraphApiError as error:
                _logger.warning("WhatsApp templates of account %s not synced: %s", account.id, error)
                continue
            _logger.info("WhatsApp templates of account %s synced: %s", account.id, counts)

    @api.model
    def _action_sync_account(self, account):
        """The account's "Sync Templates" button: sync, then tell the administrator what changed."""
        if not account.business_account_id:
            raise UserError(_("Set the WhatsApp Business Account ID first: templates are listed under it."))
        try:
            counts = self._sync_account(account)
        except graph_errors.GraphApiError as error:
            return account._notification(_("Templates not synced"), account._explain_error(error), "danger")
        message = _("%(total)s template(s) at Meta: %(new)s new here, %(gone)s no longer at Meta.",
                    total=counts["total"], new=counts["created"], gone=counts["gone"])
        action = account._notification(_("Templates synced"), message, "success")
        action["params"]["next"] = {"type": "ir.actions.client", "tag": "soft_reload"}
        return action

    @api.model
    def _sync_account(self, account):
        """Upsert the account's templates from Meta's paged list (by Meta id, then name + language) and
        flag the submitted ones Meta no longer has. Returns counts: total, created, gone."""
        remote = account._graph_client().list_templates(limit=SYNC_PAGE_SIZE, fields=META_TEMPLATE_FIELDS)
        Template = self.with_context(active_test=False)
        own = Template.search([("account_id", "=", account.id)])
        by_id = {template.meta_template_id: template for template in own if template.meta_template_id}
        by_key = {(template.name, template.language): template for template in own}
        # Account-less drafts (such as the shipped one) are adopted by the first account that has them.
        orphans = {(template.name, template.language): template for template in Template.search([
            ("account_id", "=", False), ("company_id", "in", [account.company_id.id, False])])}
        seen, created = Template.browse(), 0
        for data in remote:
            if not (data.get("id") and data.get("name")):
                continue
            key = (data["name"], data.get("language"))
            template = by_id.get(str(data["id"])) or by_key.get(key) or orphans.pop(key, None)
            if not template:
                template = Template.create({"status": "pending", **self._meta_values(data), "account_id": account.id})
                created += 1
            template._apply_meta_template(data, account)
            seen |= template
        gone = own.filtered(lambda template: template.meta_template_id and template not in seen)
        gone.filtered(lambda template: not template.meta_missing).write({"meta_missing": True})
        return {"total": len(seen), "created": created, "gone": len(gone)}

    def _apply_meta_template(self, data, account):
        self.ensure_one()
        values = dict(self._meta_values(data), account_id=account.id)
        changed = {fname: value for fname, value in values.items()
                   if (self[fname].id if fname == "account_id" else self[fname]) != value}
        if changed:
            self.write(changed)
        components = _components_by_type(data)
        self._apply_meta_buttons((components.get("BUTTONS") or {}).get("buttons") or [])
        self._apply_meta_examples(components)

    @api.model
    def _meta_status_values(self, data):
        """Status, rejection reason, quality and category from one of Meta's template objects."""
        values = {"meta_missing": False}
        status = META_TEMPLATE_STATUS.get(str(data.get("status", "")).upper())
        if status:
            values["status"] = status
        if "rejected_reason" in data:
            reason = data.get("rejected_reason")
            values["rejected_reason"] = reason if reason and reason != "NONE" else False
        score = (data.get("quality_score") or {}).get("score") if isinstance(data.get("quality_score"), dict) else None
        if score:
            values["quality_score"] = score if score in ("GREEN", "YELLOW", "RED") else "UNKNOWN"
        if data.get("category") in dict(TEMPLATE_CATEGORIES):
            values["category"] = data["category"]
        return values

    @api.model
    def _meta_values(self, data):
        """Our field values for one of Meta's template objects (buttons and examples apart)."""
        components = _components_by_type(data)
        header = components.get("HEADER") or {}
        header_type = HEADER_TYPES_FROM_META.get(str(header.get("format", "")).upper(), "none")
        values = {
            "name": data["name"],
            "language": data.get("language") or "en_US",
            "meta_template_id": str(data["id"]),
            "body": (components.get("BODY") or {}).get("text") or AUTHENTICATION_BODY,
            "header_type": header_type,
            "header_text": (header.get("text") or False) if header_type == "text" else False,
            "footer_text": (components.get("FOOTER") or {}).get("text") or False,
            **self._meta_status_values(data),
        }
        if data.get("parameter_format") in ("POSITIONAL", "NAMED"):
            values["parameter_format"] = data["parameter_format"]
        return values

    def _apply_meta_buttons(self, definitions):
        """Replace the buttons when Meta's differ (their variables go with them)."""
        Button = self.env["strato.whatsapp.template.button"]
        wanted = [values for values in map(Button._values_from_meta, definitions) if values]
        current = [{fname: button[fname] or False for fname in ("button_type", "text", "url", "phone_number")}
                   for button in self.button_ids]
        if wanted != current:
            self.button_ids.unlink()
            Button.create([dict(values, template_id=self.id, sequence=index) for index, values in enumerate(wanted)])

    def _apply_meta_examples(self, components):
        """Meta's example values become the variables' examples."""
        samples = {}
        for component in ("header", "body"):
            samples.update(self._meta_text_samples(component, components.get(component.upper()) or {}))
        definitions = [definition for definition in (components.get("BUTTONS") or {}).get("buttons") or []
                       if self.env["strato.whatsapp.template.button"]._values_from_meta(definition)]
        for button, definition in zip(self.button_ids, definitions):
            if button.has_variable:
                samples[("button", button.id, "1")] = button._sample_from_meta(definition)
        for variable in self.variable_ids:
            sample = samples.get((variable.component, variable.button_id.id, variable.name))
            if sample and variable.sample != sample:
                variable.sample = sample

    def _meta_text_samples(self, component, definition):
        example = definition.get("example") or {}
        named = example.get(f"{component}_text_named_params")
        if named:
            return {(component, False, param.get("param_name")): param.get("example") for param in named}
        values = example.get(f"{component}_text") or []
        if values and isinstance(values[0], list):
            values = values[0]
        names = self._ordered_placeholders(definition.get("text"))
        return {(component, False, name): value for name, value in zip(names, values) if isinstance(value, str)}
