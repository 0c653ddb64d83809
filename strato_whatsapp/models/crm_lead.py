from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..tools import phone

NUMBER_STATES = [
    ("valid", "Valid"),
    ("invalid", "Invalid"),
    ("missing", "Missing"),
]


class CrmLead(models.Model):
    _inherit = "crm.lead"

    whatsapp_conversation_ids = fields.One2many(
        "strato.whatsapp.conversation", "lead_id", string="WhatsApp Conversations",
        groups="strato_whatsapp.group_whatsapp_user")
    whatsapp_message_ids = fields.One2many(
        "strato.whatsapp.message", "lead_id", string="WhatsApp Messages",
        groups="strato_whatsapp.group_whatsapp_user")
    whatsapp_message_count = fields.Integer(
        "WhatsApp Message Count", compute="_compute_whatsapp_message_count",
        groups="strato_whatsapp.group_whatsapp_user")
    whatsapp_number = fields.Char(
        "WhatsApp Number", compute="_compute_whatsapp_number", store=True, index="btree_not_null",
        help="The mobile (or else the phone) in international E.164 form, read with the lead's country "
             "or the company's.")
    whatsapp_number_state = fields.Selection(
        NUMBER_STATES, "WhatsApp Number Status", compute="_compute_whatsapp_number", store=True)
    whatsapp_mobile_key = fields.Char(
        compute="_compute_whatsapp_number", store=True, index="btree_not_null",
        help="Technical: the mobile as WhatsApp ids are matched against it.")
    whatsapp_phone_key = fields.Char(
        compute="_compute_whatsapp_number", store=True, index="btree_not_null",
        help="Technical: the phone as WhatsApp ids are matched against it.")
    whatsapp_opt_out = fields.Boolean(
        "WhatsApp Opt-out", compute="_compute_whatsapp_opt_out", inverse="_inverse_whatsapp_opt_out",
        search="_search_whatsapp_opt_out",
        help="The contact asked not to receive messages. Kept in the phone blacklist, which SMS honours too.")

    @api.depends("mobile", "phone", "country_id", "company_id")
    def _compute_whatsapp_number(self):
        for lead in self:
            country_code = lead._whatsapp_country_code()
            mobile = phone.to_e164(lead.mobile, country_code)
            landline = phone.to_e164(lead.phone, country_code)
            lead.whatsapp_number = mobile or landline or False
            lead.whatsapp_mobile_key = phone.match_key(mobile) or False
            lead.whatsapp_phone_key = phone.match_key(landline) or False
            if mobile or landline:
                lead.whatsapp_number_state = "valid"
            else:
                lead.whatsapp_number_state = "invalid" if (lead.mobile or lead.phone) else "missing"

    def _whatsapp_country_code(self):
        country = self.country_id or self.company_id.country_id or self.env.company.country_id
        return country.code or None

    def _compute_whatsapp_message_count(self):
        counts = dict(self.env["strato.whatsapp.message"]._read_group(
            [("lead_id", "in", self.ids)], ["lead_id"], ["__count"]))
        for lead in self:
            lead.whatsapp_message_count = counts.get(lead, 0)

    @api.depends("whatsapp_number")
    def _compute_whatsapp_opt_out(self):
        numbers = [number for number in self.mapped("whatsapp_number") if number]
        blacklisted = set(self.env["phone.blacklist"].sudo().search([("number", "in", numbers)]).mapped("number"))
        for lead in self:
            lead.whatsapp_opt_out = bool(lead.whatsapp_number) and lead.whatsapp_number in blacklisted

    def _inverse_whatsapp_opt_out(self):
        # The blacklist is shared with SMS and only writable by its managers: updated as superuser on
        # behalf of a user who may edit the lead.
        blacklist = self.env["phone.blacklist"].sudo()
        for lead in self:
            if lead.whatsapp_opt_out and not lead.whatsapp_number:
                raise UserError(_("%s has no valid WhatsApp number to opt out.", lead.display_name))
            if not lead.whatsapp_number:
                continue
            if lead.whatsapp_opt_out:
                blacklist._add([lead.whatsapp_number], message=_("Opted out of WhatsApp on lead %s", lead.display_name))
            else:
                blacklist._remove([lead.whatsapp_number], message=_("Opted back in to WhatsApp on lead %s", lead.display_name))

    def _search_whatsapp_opt_out(self, operator, value):
        if operator not in ("=", "!="):
            raise UserError(_("Unsupported search on WhatsApp opt-out: %s", operator))
        blacklisted = self.env["phone.blacklist"].sudo()._search([])
        numbers_query = blacklisted.subselect("number")
        if (operator == "=") == bool(value):
            return [("whatsapp_number", "in", numbers_query)]
        return ["|", ("whatsapp_number", "=", False), ("whatsapp_number", "not in", numbers_query)]

    def action_open_whatsapp_messages(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("strato_whatsapp.strato_whatsapp_message_action")
        action["domain"] = [("lead_id", "=", self.id)]
        action["context"] = {"default_lead_id": self.id, "search_default_group_by_conversation": 0}
        return action
