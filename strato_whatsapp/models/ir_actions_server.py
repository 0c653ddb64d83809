import logging

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

_logger = logging.getLogger(__name__)


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
        """Send to the leads the action runs on, at most once per lead and action in a transaction (an
        "On save" rule fires again at every recomputation of the lead's stored fields while it is created),
        and not again when the same template or text went to the lead's number within the repeat window
        (``strato_whatsapp.automation_repeat_hours``, 24 by default; 0 turns it off): automations repeat,
        customers should not be spammed, and Meta lowers the number's quality for it."""
        records = eval_context.get("records") or eval_context.get("record")
        if not records or self._is_recompute():
            return False
        done = self.env.cr.precommit.data.setdefault("strato_whatsapp.automation_done", set())
        leads = records.filtered(lambda lead: (self.id, lead.id) not in done)
        done.update((self.id, lead.id) for lead in leads)
        template = self.strato_whatsapp_template_id
        body = None if template else self.strato_whatsapp_body
        Message = self.env["strato.whatsapp.message"]
        repeated = Message._recently_sent_to(leads, template=template or None, body=body)
        if repeated:
            _logger.info("WhatsApp action %s: not sent again to lead(s) %s within the repeat window",
                         self.id, repeated.ids)
        leads -= repeated
        if leads:
            Message._enqueue_for_leads(leads, body=body, template=template or None,
                                       account=template.account_id or None)
        return False
