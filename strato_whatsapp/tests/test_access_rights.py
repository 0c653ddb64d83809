from psycopg2.errors import UniqueViolation

from odoo import fields
from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import SIM_ACCOUNT, WhatsappCase


@tagged("post_install", "-at_install")
class TestWhatsappAccessRights(WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.own_lead = cls._lead(name="Mío", mobile="+34 600 00 01 01", user_id=cls.salesman.id)
        cls.others_lead = cls._lead(name="Ajeno", mobile="+34 600 00 01 02", user_id=cls.other_salesman.id)
        cls.unassigned_lead = cls._lead(name="Sin asignar", mobile="+34 600 00 01 03", user_id=False)
        cls.own = cls._conversation(cls.own_lead, "34600000101")
        cls.others = cls._conversation(cls.others_lead, "34600000102")
        cls.unassigned = cls._conversation(cls.unassigned_lead, "34600000103")
        cls.no_lead = cls._conversation(False, "34600000104")
        cls.own_message = cls._message(cls.own, "para mí")
        cls.others_message = cls._message(cls.others, "para otro")

    def _visible(self, user, model):
        return self.env[model].with_user(user).search([])

    def test_salesperson_sees_conversations_of_leads_they_can_see(self):
        visible = self._visible(self.salesman, "strato.whatsapp.conversation")
        self.assertIn(self.own, visible)
        self.assertIn(self.unassigned, visible)
        self.assertNotIn(self.no_lead, visible, "a conversation without a lead is for administrators")
        self.assertNotIn(self.others, visible)
        with self.assertRaises(AccessError):
            self.others.with_user(self.salesman).read(["wa_id"])

    def test_salesperson_sees_messages_of_their_leads_only(self):
        visible = self._visible(self.salesman, "strato.whatsapp.message")
        self.assertIn(self.own_message, visible)
        self.assertNotIn(self.others_message, visible)
        lead = self.own_lead.with_user(self.salesman)
        self.assertEqual(lead.whatsapp_message_count, 1)

    def test_salesperson_keeps_the_history_of_their_lead_when_the_contact_moves_on(self):
        """A returning customer's conversation follows the new lead; the messages keep the lead they were
        exchanged on, so the earlier salesperson keeps them and the new one does not get them."""
        earlier = self._message(self.others, "cuando el lead era de otro", lead_id=self.others_lead.id)
        self.others.lead_id = self.own_lead.copy({"user_id": self.salesman.id})
        self.assertIn(self.others, self._visible(self.salesman, "strato.whatsapp.conversation"))
        self.assertNotIn(earlier, self._visible(self.salesman, "strato.whatsapp.message"))
        self.assertIn(earlier, self._visible(self.other_salesman, "strato.whatsapp.message"))

    def test_users_send_and_read_but_do_not_edit_messages(self):
        message = self.own_message.with_user(self.salesman)
        for values in ({"state": "read"}, {"body": "otra cosa"}, {"wamid": "wamid.forged"}):
            with self.assertRaises(AccessError):
                message.write(values)
        with self.assertRaises(AccessError):
            self.env["strato.whatsapp.message"].with_user(self.salesman).create({
                "conversation_id": self.own.id, "direction": "inbound", "body": "falso", "state": "received"})
        self.own.with_user(self.salesman).action_mark_read()
        self.env["strato.whatsapp.webhook.event"]._cron_process()  # the processing cron applies reads
        self.assertTrue(self.own_message.is_read)
        self.own.last_inbound_at = fields.Datetime.now()
        messages, _skipped = self.env["strato.whatsapp.message"].with_user(self.salesman)._enqueue_for_leads(
            self.own_lead.with_user(self.salesman), body="Le escribo por el piso")
        self.assertRecordValues(messages, [{"state": "queued", "author_id": self.salesman.id}])
        self.assertTrue(messages.mail_message_id)
        with self.assertRaises(AccessError):
            self.env["strato.whatsapp.message"].with_user(self.salesman)._enqueue_for_leads(
                self.others_lead.with_user(self.salesman), body="No es mío")

    def test_sales_manager_sees_all_conversations_with_a_lead(self):
        visible = self._visible(self.sales_manager, "strato.whatsapp.conversation")
        self.assertTrue({self.own, self.others, self.unassigned} <= set(visible))
        self.assertNotIn(self.no_lead, visible)
        self.assertIn(self.no_lead, self._visible(self.wa_admin, "strato.whatsapp.conversation"))

    def test_user_without_whatsapp_group_sees_nothing_but_the_lead(self):
        with self.assertRaises(AccessError):
            self._visible(self.plain_salesman, "strato.whatsapp.conversation")
        lead = self.own_lead.sudo().copy({"user_id": self.plain_salesman.id}).with_user(self.plain_salesman)
        self.assertEqual(lead.whatsapp_number, "+34600000101")
        lead.get_views([(False, "form")])  # the WhatsApp widgets are hidden, the form still loads

    def test_credentials_are_for_whatsapp_administrators_only(self):
        account = self.account.with_user(self.salesman)
        self.assertEqual(account.phone_number_id, SIM_ACCOUNT["phone_number_id"])
        with self.assertRaises(AccessError):
            account.read(["access_token"])
        with self.assertRaises(AccessError):
            account.read(["app_secret"])
        with self.assertRaises(AccessError):
            account.write({"name": "Cambiado"})
        admin_view = self.account.with_user(self.wa_admin)
        self.assertEqual(admin_view.access_token, SIM_ACCOUNT["access_token"])
        admin_view.write({"app_secret": "nuevo-secreto"})
        self.assertEqual(self.account.app_secret, "nuevo-secreto")

    def test_salesperson_cannot_create_accounts_or_templates(self):
        with self.assertRaises(AccessError):
            self.env["strato.whatsapp.account"].with_user(self.salesman).create(
                {"name": "X", "phone_number_id": "999"})
        with self.assertRaises(AccessError):
            self.env["strato.whatsapp.template"].with_user(self.salesman).create(
                {"name": "x", "account_id": self.account.id, "body": "hola"})


@tagged("post_install", "-at_install")
class TestWhatsappMultiCompany(WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company_b = cls.env["res.company"].create({"name": "Strato Argentina", "country_id": cls.env.ref("base.ar").id})
        cls.account_b = cls.env["strato.whatsapp.account"].create({
            "name": "Ventas AR", "phone_number_id": "100000000000002", "company_id": cls.company_b.id})
        lead_b = cls.env["crm.lead"].create({"name": "Lead AR", "mobile": "5491123456789", "company_id": cls.company_b.id})
        cls.conversation_b = cls._conversation(lead_b, "5491123456789", account=cls.account_b)

    def test_records_of_another_company_are_invisible(self):
        Account = self.env["strato.whatsapp.account"].with_user(self.sales_manager)
        Conversation = self.env["strato.whatsapp.conversation"].with_user(self.sales_manager)
        self.assertNotIn(self.account_b, Account.search([]))
        self.assertNotIn(self.conversation_b, Conversation.search([]))
        self.sales_manager.company_ids |= self.company_b
        both = [self.company.id, self.company_b.id]
        self.assertIn(self.account_b, Account.with_context(allowed_company_ids=both).search([]))
        self.assertIn(self.conversation_b, Conversation.with_context(allowed_company_ids=both).search([]))

    def test_phone_number_id_unique_across_companies(self):
        """Meta's phone number ids are global and webhooks are routed by them."""
        for company in (self.company, self.company_b):
            with self.subTest(company=company.name), self.assertRaises(UniqueViolation), \
                    mute_logger("odoo.sql_db"), self.cr.savepoint():
                self.env["strato.whatsapp.account"].create({
                    "name": "Duplicado", "phone_number_id": SIM_ACCOUNT["phone_number_id"], "company_id": company.id})
