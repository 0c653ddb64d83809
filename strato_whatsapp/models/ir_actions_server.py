from odoo import _, api, fields, models
from odoo.exceptions import ValidationError


class IrActionsServer(models.Model):
    """Automated actions send WhatsApp messages to leads ("on lead creation, send the welcome template")."""

    _inherit = "ir.actions.server"

    state = fields.Selection(selection_add=[("strato_whatsapp", "Send WhatsApp")],
                             ondelete={"strato_whatsapp": "cascade"})
    strato_whatsapp_template_id = fields.Many2one(
        "strato.whatsapp.template", "WhatsApp Template", ondelete="restrict",
        domain="[('status', '=', 'approved')]",
        help="Sent to every lead the action runs on (templates are allowed outside the 24-hour window).")
    strato_whatsapp_body = fields.Text(
        "WhatsApp Text",
        help="Free text, sent only to leads who wrote in the last 24 hours; used when no template is set.")

    @api.constrains("state", "model_id", "strato_whatsapp_template_id", "strato_whatsapp_body")
    def _check_strato_whatsapp_coherency(self):
        for action in self.filtered(lambda action: action.state == "strato_whatsapp"):
            if action.model_id.model != "crm.lead":
                raise ValidationError(_("“Send WhatsApp” actions run on leads (CRM) only."))
            if not (action.strato_whatsapp_template_id or action.strato_whatsapp_body):
                raise ValidationError(_("Choose a WhatsApp template or write the text to send."))

    def _run_action_strato_whatsapp_multi(self, eval_context=None):
        records = eval_context.get("records") or eval_context.get("record")
        if not records or self._is_recompute():
            return False
        template = self.strato_whatsapp_template_id
        self.env["strato.whatsapp.message"]._enqueue_for_leads(
            records, body=None if template else self.strato_whatsapp_body, template=template or None,
            account=template.account_id or None)
        return False
