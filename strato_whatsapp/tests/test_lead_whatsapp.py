from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import WhatsappCase


@tagged("post_install", "-at_install")
class TestLeadWhatsappNumber(WhatsappCase):

    def test_spanish_number_in_any_format(self):
        for typed in ("+34 600 00 00 01", "600 00 00 01", "600000001", "0034600000001"):
            lead = self._lead(mobile=typed, country_id=self.env.ref("base.es").id)
            self.assertEqual(lead.whatsapp_number, "+34600000001", typed)
            self.assertEqual(lead.whatsapp_number_state, "valid")
            self.assertEqual(lead.whatsapp_mobile_key, "34600000001")

    def test_argentine_number_from_the_original_design(self):
        lead = self._lead(mobile="5491123456789")
        self.assertEqual(lead.whatsapp_number, "+5491123456789")
        national = self._lead(phone="011 15 2345-6789", country_id=self.env.ref("base.ar").id)
        self.assertEqual(national.whatsapp_number, "+5491123456789")
        self.assertEqual(national.whatsapp_phone_key, lead.whatsapp_mobile_key)

    def test_company_country_reads_national_numbers(self):
        lead = self._lead(phone="600 00 00 02")  # no country on the lead: the company is Spanish
        self.assertEqual(lead.whatsapp_number, "+34600000002")

    def test_mobile_wins_over_phone_and_both_are_matchable(self):
        lead = self._lead(phone="91 123 45 67", mobile="600 00 00 03", country_id=self.env.ref("base.es").id)
        self.assertEqual(lead.whatsapp_number, "+34600000003")
        self.assertEqual(lead.whatsapp_phone_key, "34911234567")
        self.assertEqual(lead.whatsapp_mobile_key, "34600000003")

    def test_invalid_and_missing_numbers_are_shown_as_such(self):
        invalid = self._lead(phone="600 12")
        self.assertFalse(invalid.whatsapp_number)
        self.assertEqual(invalid.whatsapp_number_state, "invalid")
        missing = self._lead()
        self.assertEqual(missing.whatsapp_number_state, "missing")
        # The form renders for both without error.
        self.env["crm.lead"].with_user(self.salesman).get_views([(False, "form")])

    def test_number_follows_edits(self):
        lead = self._lead(mobile="600 12")
        lead.mobile = "+34 600 00 00 04"
        self.assertEqual(lead.whatsapp_number, "+34600000004")
        lead.mobile = False
        self.assertEqual(lead.whatsapp_number_state, "missing")


@tagged("post_install", "-at_install")
class TestLeadWhatsappOptOut(WhatsappCase):

    def test_opt_out_writes_the_phone_blacklist_and_back(self):
        lead = self._lead(mobile="+34 600 00 00 05", user_id=self.salesman.id).with_user(self.salesman)
        lead.whatsapp_opt_out = True
        blacklist = self.env["phone.blacklist"].sudo()
        self.assertTrue(blacklist.search([("number", "=", "+34600000005")]))
        self.assertIn(lead, self.env["crm.lead"].search([("whatsapp_opt_out", "=", True)]))
        self.wa_admin.groups_id |= self.env.ref("sales_team.group_sale_salesman_all_leads")
        lead.with_user(self.wa_admin).whatsapp_opt_out = False  # lifting it is an administrator's call
        self.assertFalse(blacklist.search([("number", "=", "+34600000005")]))
        self.assertNotIn(lead, self.env["crm.lead"].search([("whatsapp_opt_out", "=", True)]))

    def test_blacklist_entry_made_elsewhere_shows_on_the_lead(self):
        lead = self._lead(mobile="600 00 00 06")
        self.assertFalse(lead.whatsapp_opt_out)
        self.env["phone.blacklist"].sudo().add("+34600000006")
        lead.invalidate_recordset(["whatsapp_opt_out"])
        self.assertTrue(lead.whatsapp_opt_out)
        self.assertIn(lead, self.env["crm.lead"].search([("whatsapp_opt_out", "!=", False)]))

    def test_opt_out_without_a_number_is_a_clear_error(self):
        lead = self._lead(phone="600 12")
        with self.assertRaisesRegex(UserError, "no valid WhatsApp number"):
            lead.whatsapp_opt_out = True


@tagged("post_install", "-at_install")
class TestLeadWhatsappMessages(WhatsappCase):

    def test_message_count_and_smart_button_action(self):
        lead = self._lead(mobile="+34 600 00 00 07")
        conversation = self._conversation(lead, "34600000007")
        self._message(conversation, "Hola")
        self._message(conversation, "¿Sigue disponible?")
        self.assertEqual(lead.whatsapp_message_count, 2)
        self.assertEqual(lead.whatsapp_conversation_ids, conversation)
        action = lead.action_open_whatsapp_messages()
        self.assertEqual(self.env["strato.whatsapp.message"].search(action["domain"]), lead.whatsapp_message_ids)

    def test_unread_count_and_mark_read(self):
        lead = self._lead(mobile="+34 600 00 00 08")
        conversation = self._conversation(lead, "34600000008")
        self._message(conversation, "uno")
        self._message(conversation, "dos")
        self._message(conversation, "respuesta", direction="outbound")
        self.assertEqual(conversation.unread_count, 2)
        conversation.action_mark_read()
        self.env["strato.whatsapp.webhook.event"]._cron_process()  # the processing cron applies reads
        self.assertEqual(conversation.unread_count, 0)

    def test_reply_window(self):
        lead = self._lead(mobile="+34 600 00 00 09")
        conversation = self._conversation(lead, "34600000009")
        self.assertFalse(conversation.window_open)
        conversation.last_inbound_at = "2020-01-01 10:00:00"
        self.assertFalse(conversation.window_open)
        conversation.last_inbound_at = self.env.cr.now()
        conversation.invalidate_recordset(["window_open"])
        self.assertTrue(conversation.window_open)
        Conversation = self.env["strato.whatsapp.conversation"]
        self.assertIn(conversation, Conversation.search([("window_open", "=", True)]))
        self.assertNotIn(conversation, Conversation.search([("window_open", "=", False)]))

    def test_message_keeps_the_lead_it_was_exchanged_with(self):
        first = self._lead(mobile="+34 600 00 00 10")
        conversation = self._conversation(first, "34600000010")
        old = self._message(conversation, "antes")
        second = self._lead(mobile="+34 600 00 00 10", name="Nuevo interés")
        conversation.lead_id = second
        new = self._message(conversation, "después")
        self.assertEqual(old.lead_id, first)
        self.assertEqual(new.lead_id, second)
