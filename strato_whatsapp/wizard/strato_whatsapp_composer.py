import base64
import mimetypes

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools.mimetypes import guess_mimetype


class StratoWhatsappComposer(models.TransientModel):
    """Write to one lead or many: free text inside the 24-hour window, an approved template otherwise."""

    _name = "strato.whatsapp.composer"
    _description = "Send WhatsApp Message"

    lead_ids = fields.Many2many("crm.lead", string="Leads", required=True)
    lead_count = fields.Integer(compute="_compute_reach")
    account_id = fields.Many2one(
        "strato.whatsapp.account", "From", required=True, compute="_compute_account_id", store=True,
        readonly=False, precompute=True, help="The WhatsApp number the message goes out from.")
    mode = fields.Selection([("text", "Free Text"), ("template", "Template")], required=True,
                            compute="_compute_mode", store=True, readonly=False, precompute=True)
    body = fields.Text("Message")
    template_id = fields.Many2one(
        "strato.whatsapp.template", "Template",
        domain="[('account_id', '=', account_id), ('status', '=', 'approved')]")
    attachment = fields.Binary("File", attachment=False)
    attachment_name = fields.Char("File Name")
    preview = fields.Text(compute="_compute_preview")
    preview_lead_id = fields.Many2one(
        "crm.lead", compute="_compute_reach",
        help="The first selected lead the message can go to: the preview shows what this one receives.")
    window_open_count = fields.Integer(compute="_compute_reach")
    unreachable_count = fields.Integer(compute="_compute_reach")
    reach_text = fields.Char(compute="_compute_reach")
    repeat_warning = fields.Char(compute="_compute_repeat_warning")
    send_again = fields.Boolean(
        "Send Again", help="The same message went to these contacts recently: tick to send it once more.")

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        context = self.env.context
        if "lead_ids" in fields_list and not values.get("lead_ids") and context.get("active_model") == "crm.lead":
            ids = context.get("active_ids") or [context.get("active_id")]
            values["lead_ids"] = [(6, 0, [lead_id for lead_id in ids if lead_id])]
        return values

    @api.depends("lead_ids")
    def _compute_account_id(self):
        Conversation = self.env["strato.whatsapp.conversation"]
        for composer in self:
            lead = composer.lead_ids[:1]._origin
            composer.account_id = (lead and Conversation._latest_account(lead)) or \
                self.env["strato.whatsapp.account"]._default_for(lead.company_id or self.env.company)

    @api.depends("lead_ids", "account_id")
    def _compute_reach(self):
        Conversation = self.env["strato.whatsapp.conversation"]
        for composer in self:
            leads = composer.lead_ids._origin
            account = composer.account_id._origin
            links = Conversation._plan_for_leads(leads, account) if account and leads.has_access("write") else {}
            refused = {lead: link.refusal for lead, link in links.items() if link.refusal}
            reachable = {lead for lead, link in links.items() if not link.refusal and (link.conversation or link.wa_id)}
            open_leads = {lead for lead in reachable if links[lead].window_open}
            composer.lead_count = len(leads)
            composer.preview_lead_id = next((lead for lead in leads if lead in reachable), False)
            composer.window_open_count = len(open_leads)
            composer.unreachable_count = len(leads) - len(reachable)
            if len(leads) == 1:
                if refused:
                    composer.reach_text = next(iter(refused.values()))
                elif leads not in reachable and leads[:1] not in reachable:
                    composer.reach_text = _("This lead has no valid WhatsApp number.")
                else:
                    composer.reach_text = (_("The contact wrote in the last 24 hours: you can write freely.")
                                           if open_leads else
                                           _("The contact has not written in the last 24 hours: only an approved "
                                             "template can be sent."))
            else:
                composer.reach_text = _("%(open)s of %(total)s leads wrote in the last 24 hours (free text reaches "
                                        "only them); %(bad)s cannot be written to (no valid number, or their "
                                        "conversation is on another salesperson's lead).",
                                        open=composer.window_open_count, total=len(leads),
                                        bad=composer.unreachable_count)

    @api.depends("lead_ids", "account_id")
    def _compute_mode(self):
        for composer in self:
            composer.mode = "text" if composer.lead_ids and \
                composer.window_open_count == len(composer.lead_ids) else "template"

    @api.depends("mode", "body", "template_id", "lead_ids")
    def _compute_repeat_warning(self):
        Message = self.env["strato.whatsapp.message"]
        for composer in self:
            template = composer.template_id if composer.mode == "template" else None
            body = (composer.body or None) if composer.mode == "text" else None
            repeated = Message._recently_sent_to(composer.lead_ids._origin, template=template, body=body)
            composer.repeat_warning = _(
                "%(leads)s already got this message in the last hours. Send it again?",
                leads=", ".join(repeated[:3].mapped("display_name")) + (" …" if len(repeated) > 3 else "")
            ) if repeated else False

    @api.depends("mode", "body", "template_id", "lead_ids", "account_id")
    def _compute_preview(self):
        for composer in self:
            lead = composer.preview_lead_id._origin
            if composer.mode == "template" and composer.template_id and lead:
                composer.preview = composer.template_id._render_text(lead)
            else:
                composer.preview = composer.body or ""

    def action_send(self):
        self.ensure_one()
        if not self.lead_ids:  # also what a user sees of leads they cannot read
            raise UserError(_("Choose the leads to write to."))
        if self.repeat_warning and not self.send_again:
            raise UserError(_("%s Tick “Send Again” to send it anyway.", self.repeat_warning))
        if self.mode == "template" and not self.template_id:
            raise UserError(_("Choose an approved template."))
        if self.mode == "text" and not (self.body or self.attachment):
            raise UserError(_("Write a message or attach a file."))
        if self.mode == "text" and not self.window_open_count:
            raise UserError(_("None of these contacts wrote in the last 24 hours: WhatsApp only lets an approved "
                              "template reach them. Choose Template."))
        attachment = self._create_attachment()
        messages, skipped = self.env["strato.whatsapp.message"]._enqueue_for_leads(
            self.lead_ids, body=self.body if self.mode == "text" else None,
            template=self.template_id if self.mode == "template" else None,
            attachment=attachment, account=self.template_id.account_id if self.mode == "template" else self.account_id,
            raise_on_skip=len(self.lead_ids) == 1)
        if len(self.lead_ids) == 1:
            return {"type": "ir.actions.act_window_close"}
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": _("WhatsApp"),
                "message": _("%(queued)s message(s) queued, %(skipped)s lead(s) skipped (see their chatter).",
                             queued=len(messages), skipped=len(skipped)),
                "type": "warning" if skipped else "success",
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def _create_attachment(self):
        if not self.attachment or self.mode != "text":
            return self.env["ir.attachment"]
        single_lead = self.lead_ids if len(self.lead_ids) == 1 else self.env["crm.lead"]
        raw = base64.b64decode(self.attachment)
        mimetype = (mimetypes.guess_type(self.attachment_name or "")[0] or guess_mimetype(raw))
        name = self.attachment_name or _("file") + (mimetypes.guess_extension(mimetype) or "")
        return self.env["ir.attachment"].create({
            "name": name,
            "raw": raw,
            "mimetype": mimetype,
            "res_model": "crm.lead" if single_lead else False,
            "res_id": single_lead.id,
        })
