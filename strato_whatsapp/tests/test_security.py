"""The security review's findings, each tested as the user who would exploit it, through the ORM/RPC
surface (``with_user``), asserting what that user observes: an error, nothing written, nothing sent."""
import inspect
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from psycopg2.errors import UniqueViolation

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import Form, new_test_user, tagged
from odoo.tests.common import BaseCase
from odoo.tools import mute_logger

from .common import SIM_ACCOUNT, WhatsappCase, WhatsappHttpCase, WithGraphSimulator, payloads

ADDON_MODULE = "odoo.addons.strato_whatsapp."
# The ORM's own entry points, which the addon extends: they are guarded by the access rights and record
# rules the other tests check, not by a check of their own.
ORM_METHODS = {"create", "write", "unlink", "copy_data", "default_get", "init", "onchange", "name_create"}
# Arguments for the public methods that take some (ids that exist, so that refusals are not just
# "not found").
METHOD_ARGS = {
    "whatsapp_chat_older": lambda case: (case.others_message.id,),
    "whatsapp_chat_fetch": lambda case: (case.others_message.ids,),
    "whatsapp_chat_send": lambda case: ("hola",),
}
WATCHED_TABLES = ("strato_whatsapp_account", "strato_whatsapp_conversation", "strato_whatsapp_message",
                  "strato_whatsapp_template", "strato_whatsapp_webhook_event", "crm_lead", "phone_blacklist",
                  "ir_cron_trigger")


def _public_methods(model):
    """Public methods (callable over RPC) that the addon defines on ``model``'s class, ORM ones aside."""
    names = set()
    for cls in type(model).__mro__:
        if not cls.__module__.startswith(ADDON_MODULE):
            continue
        for name, member in vars(cls).items():
            if callable(member) and not name.startswith("_") and name not in ORM_METHODS:
                names.add(name)
    return sorted(names)


class SecurityCase(WithGraphSimulator, WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.own_lead = cls._lead(name="Mío", contact_name="Lucía", mobile="+34 600 00 07 01", user_id=cls.salesman.id)
        cls.others_lead = cls._lead(name="Ajeno", contact_name="Secreto Ajeno", mobile="+34 600 00 07 02",
                                    user_id=cls.other_salesman.id, description="<p>nota privada</p>")
        cls.unassigned_lead = cls._lead(name="Libre", contact_name="Libre", mobile="+34 600 00 07 05")
        cls.own = cls._conversation(cls.own_lead, "34600000701", last_inbound_at=fields.Datetime.now())
        cls.others = cls._conversation(cls.others_lead, "34600000702", last_inbound_at=fields.Datetime.now())
        cls.own_message = cls._message(cls.own, "para mí", wamid="wamid.own.1")
        cls.others_message = cls._message(cls.others, "para otro", wamid="wamid.others.1")
        cls.template = cls.env["strato.whatsapp.template"].create({
            "name": "promo_pisos", "account_id": cls.account.id, "language": "es", "category": "MARKETING",
            "status": "approved", "meta_template_id": "9001", "body": "Hola {{1}}, tenemos pisos nuevos."})
        cls.portal = new_test_user(cls.env, login="wa_portal", groups="base.group_portal", name="Portal")
        cls.internal = new_test_user(cls.env, login="wa_internal", groups="base.group_user", name="Interno")
        cls.company_b = cls.env["res.company"].create({"name": "Otra Agencia", "country_id": cls.env.ref("base.ar").id})
        cls.user_b = new_test_user(
            cls.env, login="wa_admin_b", name="Admin B", company_id=cls.company_b.id, company_ids=[cls.company_b.id],
            groups="strato_whatsapp.group_whatsapp_admin,sales_team.group_sale_salesman_all_leads")

    def _sent(self):
        return self.simulator.requests()

    def assertRefused(self, call, *args, kinds=(AccessError, UserError)):
        """``call(*args)`` raises one of ``kinds`` (Odoo's assertRaises takes a single class), rolled back."""
        try:
            with self.env.cr.savepoint():
                result = call(*args)
        except kinds as error:
            return error
        self.fail(f"{call} was not refused: {result!r}")

    def _snapshot(self):
        self.env.flush_all()
        digests = {}
        for table in WATCHED_TABLES:
            self.env.cr.execute(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) FROM {table} t")  # noqa: S608
            digests[table] = self.env.cr.fetchone()[0]
        return digests


@tagged("post_install", "-at_install")
class TestPublicMethodsRefuseOutsiders(SecurityCase):
    """Every public method of every addon model, called by users who have no right to it."""

    def _records(self):
        return {
            "strato.whatsapp.account": self.account,
            "strato.whatsapp.template": self.template,
            "strato.whatsapp.conversation": self.others,
            "strato.whatsapp.message": self.others_message,
            "strato.whatsapp.webhook.event": self.env["strato.whatsapp.webhook.event"].create({
                "account_id": self.account.id, "company_id": self.company.id, "payload": "{}", "state": "failed"}),
            "crm.lead": self.others_lead,
            "strato.whatsapp.composer": self.env["strato.whatsapp.composer"].create({
                "lead_ids": [(6, 0, self.others_lead.ids)], "account_id": self.account.id, "mode": "text",
                "body": "hola"}),
        }

    def test_every_public_method_is_listed(self):
        """The list below grows with the addon: a new public method must be added to a refusal test."""
        found = {model: _public_methods(record) for model, record in self._records().items()}
        self.assertIn("action_test_connection", found["strato.whatsapp.account"])
        self.assertIn("whatsapp_chat_send", found["crm.lead"])
        self.assertIn("action_retry", found["strato.whatsapp.message"])
        self.assertIn("action_replay", found["strato.whatsapp.webhook.event"])
        # Every model of the addon with a public method is covered.
        for model_name in self.env.registry:
            model = self.env[model_name]
            if model_name not in found and _public_methods(model) and not model._abstract:
                self.fail(f"{model_name} has public methods {_public_methods(model)} but no refusal test")

    def test_portal_internal_and_other_company_users_are_refused_everything(self):
        self.simulator.set_faults([])
        users = {"portal": self.portal, "internal without WhatsApp": self.internal, "other company": self.user_b}
        calls = 0
        for model_name, record in self._records().items():
            for name in _public_methods(record):
                args = METHOD_ARGS.get(name, lambda case: ())(self)
                for label, user in users.items():
                    before = self._snapshot()
                    with self.subTest(model=model_name, method=name, user=label), mute_logger("odoo.models"):
                        self.assertRefused(getattr(record.with_user(user).with_context(
                            allowed_company_ids=user.company_ids.ids), name), *args)
                        self.assertEqual(self._snapshot(), before, f"{label}: {model_name}.{name} wrote something")
                    calls += 1
        self.assertGreater(calls, 30)
        self.assertEqual(self._sent(), [], "no request reached Meta")

    def test_salesperson_cannot_use_the_administrators_buttons(self):
        account = self.account.with_user(self.salesman)
        for name in ("action_test_connection", "action_resume_sending", "action_regenerate_verify_token",
                     "action_sync_templates"):
            with self.subTest(method=name), self.assertRaises(AccessError):
                getattr(account, name)()
        for name in ("action_submit", "action_refresh_status"):
            with self.subTest(method=name), self.assertRaises(AccessError):
                getattr(self.template.with_user(self.salesman), name)()
        self.assertEqual(self._sent(), [], "Meta's side was not touched")
        self.assertEqual(self.template.status, "approved")

    def test_administrator_buttons_still_work_for_administrators(self):
        token = self.account.verify_token
        self.account.with_user(self.wa_admin).action_regenerate_verify_token()
        self.assertNotEqual(self.account.verify_token, token)
        result = self.account.with_user(self.wa_admin).action_test_connection()
        self.assertEqual(result["params"]["type"], "success", result)


@tagged("post_install", "-at_install")
class TestTemplatePreview(SecurityCase):

    def _onchange_preview(self, user, lead, field_path="contact_name"):
        Template = self.env["strato.whatsapp.template"].with_user(user)
        spec = {"preview_text": {}, "variable_ids": {"fields": {"field_path": {}}}}
        values = {"name": "x", "account_id": self.account.id, "body": "Hola {{1}}", "preview_lead_id": lead.id,
                  "variable_ids": [(0, 0, {"component": "body", "name": "1", "source": "field", "field_path": field_path})]}
        return Template.onchange(values, ["preview_lead_id"], spec)["value"].get("preview_text", "")

    def test_preview_of_a_lead_the_user_cannot_read_shows_no_data(self):
        preview = self._onchange_preview(self.salesman, self.others_lead)
        self.assertNotIn("Secreto Ajeno", preview)
        self.assertIn("Secreto Ajeno", self._onchange_preview(self.other_salesman, self.others_lead),
                      "the lead's own salesperson sees it filled")

    def test_portal_user_gets_no_preview_at_all(self):
        with self.assertRaises(AccessError):
            self._onchange_preview(self.portal, self.others_lead)

    def test_paths_outside_the_allow_list_are_refused_everywhere(self):
        admins_lead = self._lead(name="Del admin", contact_name="Rosa", user_id=self.wa_admin.id,
                                 description="<p>nota privada</p>")
        for path in ("user_id.login", "user_id.totp_secret", "description", "company_id.partner_id.email",
                     "create_uid.password"):
            with self.subTest(path=path):
                try:
                    preview = self._onchange_preview(self.wa_admin, admins_lead, path)
                except (ValueError, ValidationError):
                    preview = ""
                self.assertNotIn("wa_admin", preview)
                self.assertNotIn("nota privada", preview)
                self.assertRefused(self.template.with_user(self.wa_admin).write, {"variable_ids": [(0, 0, {
                    "component": "body", "name": "1", "source": "field", "field_path": path})]},
                    kinds=(ValueError, ValidationError))

    def test_a_path_smuggled_into_the_database_is_not_sent(self):
        variable = self.template.variable_ids
        self.env.flush_all()
        self.env.cr.execute("UPDATE strato_whatsapp_template_variable SET field_path = 'user_id.login' WHERE id = %s",
                            [variable.id])
        variable.invalidate_recordset()
        with self.assertRaisesRegex(UserError, "not a lead field"):
            self.env["strato.whatsapp.message"]._enqueue_for_leads(self.own_lead, template=self.template,
                                                                   raise_on_skip=True)

    def test_preview_does_not_even_name_a_lead_the_user_cannot_read(self):
        Template = self.env["strato.whatsapp.template"].with_user(self.salesman)
        result = Template.onchange({"name": "x", "account_id": self.account.id, "body": "Hola",
                                    "preview_lead_id": self.others_lead.id}, ["preview_lead_id"],
                                   {"preview_lead_id": {"fields": {"display_name": {}}}, "preview_text": {}})
        self.assertNotIn("Ajeno", str(result))

    def test_meta_ids_are_digits_only(self):
        for fname in ("phone_number_id", "business_account_id", "app_id"):
            for value in ("../_sim/stats#", "100000000000001/../x", "1?x=1"):
                with self.subTest(field=fname, value=value):
                    self.assertRefused(self.account.with_user(self.wa_admin).write, {fname: value},
                                       kinds=(ValidationError,))

    def test_saving_a_preview_lead_the_user_cannot_read_is_refused(self):
        with self.assertRaises(AccessError):
            self.template.with_user(self.wa_admin).with_context(
                allowed_company_ids=self.company.ids).write({"preview_lead_id": self.env["crm.lead"].create({
                    "name": "B", "company_id": self.company_b.id}).id})


@tagged("post_install", "-at_install")
class TestConversationOwnership(SecurityCase):

    def test_salesperson_cannot_take_a_colleagues_conversation(self):
        """The attack: a lead of one's own with a colleague's customer's number, then the composer."""
        mine = self._lead(name="Robado", mobile="+34 600 00 07 02", user_id=self.salesman.id).with_user(self.salesman)
        before = self._snapshot()
        with self.assertRaisesRegex(UserError, "Otro Vendedor"):
            mine.whatsapp_chat_send(body="hola")
        form = Form(self.env(user=self.salesman)["strato.whatsapp.composer"].with_context(
            active_model="crm.lead", active_ids=mine.ids))
        self.assertEqual(form.mode, "template")
        form.template_id = self.template
        with self.assertRaisesRegex(UserError, "Otro Vendedor"):
            form.save().action_send()
        self.assertEqual(self.others.lead_id, self.others_lead, "the conversation stays with its lead")
        self.assertEqual(self._snapshot()["strato_whatsapp_conversation"], before["strato_whatsapp_conversation"])
        self.assertIn("Otro Vendedor", mine.whatsapp_chat_load()["composer"]["notice"])
        with self.assertRaises(AccessError):
            self.others_message.with_user(self.salesman).read(["body"])
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(self._sent(), [])

    def test_skipped_send_leaves_no_side_effect(self):
        """A mass send skips (and commits) the leads it cannot reach: a skipped lead keeps what it had."""
        taker = self._lead(name="Robado", mobile="+34 600 00 07 02", user_id=self.salesman.id)
        closed = self._lead(name="Sin ventana", mobile="+34 600 00 07 09", user_id=self.salesman.id)
        messages, skipped = self.env["strato.whatsapp.message"].with_user(self.salesman)._enqueue_for_leads(
            (taker | closed | self.own_lead).with_user(self.salesman), body="hola")
        self.assertEqual(set(skipped), {taker, closed})
        self.assertEqual(messages.lead_id, self.own_lead)
        self.assertEqual(self.others.lead_id, self.others_lead, "the colleague's conversation did not move")
        self.assertFalse(self.env["strato.whatsapp.conversation"].search([("wa_id", "=", "34600000709")]),
                         "no conversation created for the skipped lead")

    def test_manager_may_move_the_conversation_to_the_lead_written_from(self):
        second = self._lead(name="Segundo", contact_name="Marta", mobile="+34 600 00 07 02")
        messages, skipped = self.env["strato.whatsapp.message"].with_user(self.sales_manager)._enqueue_for_leads(
            second.with_user(self.sales_manager), template=self.template.with_user(self.sales_manager))
        self.assertFalse(skipped)
        self.assertEqual(self.others.lead_id, second)
        self.assertEqual(self.others_message.lead_id, self.others_lead, "earlier messages keep their lead")

    def test_conversation_of_a_closed_lead_follows_without_its_history(self):
        self.others_lead.action_set_lost()
        mine = self._lead(name="Vuelve", mobile="+34 600 00 07 02", user_id=self.salesman.id).with_user(self.salesman)
        mine.whatsapp_chat_send(body="Hola de nuevo")
        self.assertEqual(self.others.lead_id, mine)
        visible = self.env["strato.whatsapp.message"].with_user(self.salesman).search([])
        self.assertNotIn(self.others_message, visible, "the colleague's history stays theirs")

    def test_retry_cannot_send_into_a_conversation_that_moved_on(self):
        """A failed message of one's own lead, retried after the contact's conversation went to a
        colleague's open lead, is refused (and would fail at send time)."""
        failed = self._message(self.others, "antes", direction="outbound", lead_id=self.own_lead.id, state="failed")
        with self.assertRaisesRegex(UserError, "Otro Vendedor"):
            failed.with_user(self.salesman).action_retry()
        failed.state = "queued"
        failed.next_attempt_at = fields.Datetime.now()
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertRecordValues(failed, [{"state": "failed", "failure_type": "recipient"}])
        self.assertEqual(self._sent(), [])

    def test_whatsapp_administrators_do_not_edit_conversations_or_messages(self):
        for record, values in ((self.own, {"last_inbound_at": fields.Datetime.now()}), (self.own, {"lead_id": self.others_lead.id}),
                               (self.own_message, {"body": "reescrito"})):
            with self.subTest(record=record, values=values), self.assertRaises(AccessError):
                record.with_user(self.wa_admin).write(values)
        with self.assertRaises(AccessError):
            self.env["strato.whatsapp.conversation"].with_user(self.wa_admin).create(
                {"account_id": self.account.id, "wa_id": "34611222333", "last_inbound_at": fields.Datetime.now()})

    def test_users_cannot_write_conversations(self):
        conversation = self.own.with_user(self.salesman)
        for values in ({"last_inbound_at": "9999-12-31 23:59:59"}, {"wa_id": "34699999999"},
                       {"lead_id": self.own_lead.id}, {"account_id": self.account.id}, {"bsuid": "x"}):
            with self.subTest(values=values), self.assertRaises(AccessError):
                conversation.write(values)
        with self.assertRaises(AccessError):
            self.env["strato.whatsapp.conversation"].with_user(self.salesman).create(
                {"account_id": self.account.id, "wa_id": "34699999998", "lead_id": self.own_lead.id})

    def test_a_date_far_in_the_future_does_not_break_the_inbox(self):
        self.own.last_inbound_at = "9999-12-31 23:59:59"
        inbox = self.env["strato.whatsapp.conversation"].with_user(self.salesman).search_read(
            [], ["window_open", "window_expires_at", "last_message_preview"])
        self.assertTrue(inbox)

    def test_merge_carries_the_whatsapp_history(self):
        second = self._lead(name="Duplicado", mobile="+34 600 00 07 03", user_id=self.salesman.id)
        conversation = self._conversation(second, "34600000703")
        message = self._message(conversation, "del duplicado")
        merged = (self.own_lead | second)._merge_opportunity(auto_unlink=True)
        self.assertTrue(conversation.lead_id == merged and message.lead_id == merged)
        visible = self.env["strato.whatsapp.message"].with_user(self.salesman).search([])
        self.assertIn(message, visible)

    def test_history_of_a_deleted_lead_is_for_administrators_only(self):
        self.others_lead.unlink()
        for user in (self.salesman, self.other_salesman, self.sales_manager):
            with self.subTest(user=user.login):
                self.assertNotIn(self.others_message, self.env["strato.whatsapp.message"].with_user(user).search([]))
                self.assertNotIn(self.others, self.env["strato.whatsapp.conversation"].with_user(user).search([]))
        self.assertIn(self.others_message, self.env["strato.whatsapp.message"].with_user(self.wa_admin).search([]))

    def test_older_messages_do_not_tell_missing_from_foreign(self):
        lead = self.own_lead.with_user(self.salesman)
        foreign = lead.whatsapp_chat_older(self.others_message.id)
        missing = lead.whatsapp_chat_older(10 ** 9)
        self.assertEqual(foreign, missing)
        self.assertEqual(foreign["messages"], [])

    def test_quoted_messages_resolve_within_the_conversation(self):
        reply = self._message(self.own, "respuesta", reply_to_wamid="wamid.others.1")
        values = reply.with_user(self.sales_manager)._chat_values()  # who can read both conversations
        self.assertEqual(values[0]["reply_to"], "", "another contact's message is not quoted")


@tagged("post_install", "-at_install")
class TestCompanies(SecurityCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.account_b = cls.env["strato.whatsapp.account"].create({
            "name": "Ventas AR", "phone_number_id": "100000000000702", "company_id": cls.company_b.id,
            "access_token": "token-b", "graph_api_url": "http://127.0.0.1:9"})
        cls.lead_b = cls.env["crm.lead"].create({"name": "Lead AR", "mobile": "+5491123450702",
                                                  "company_id": cls.company_b.id})
        cls.conversation_b = cls._conversation(cls.lead_b, "34600000701", account=cls.account_b,
                                               last_inbound_at=fields.Datetime.now())
        cls.both = new_test_user(cls.env, login="wa_both", name="Dos Empresas",
                                 company_id=cls.company.id, company_ids=[cls.company.id, cls.company_b.id],
                                 groups="strato_whatsapp.group_whatsapp_user")

    def test_composer_cannot_send_from_another_companys_number(self):
        for user, companies in ((self.salesman, self.company.ids), (self.both, [self.company.id, self.company_b.id])):
            with self.subTest(user=user.login):
                composer = self.env["strato.whatsapp.composer"].with_user(user).with_context(
                    allowed_company_ids=companies).create({
                        "lead_ids": [(6, 0, self.own_lead.ids)], "account_id": self.account_b.id, "mode": "text",
                        "body": "Hola"})
                self.assertRefused(composer.action_send)
        self.assertEqual(self.conversation_b.lead_id, self.lead_b, "B's conversation stays in B")
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(self._sent(), [])

    def test_phone_number_id_is_unique_across_companies(self):
        with mute_logger("odoo.sql_db"):
            self.assertRefused(self.env["strato.whatsapp.account"].create, {
                "name": "Copia", "phone_number_id": SIM_ACCOUNT["phone_number_id"], "company_id": self.company_b.id},
                kinds=(UniqueViolation,))


@tagged("post_install", "-at_install")
class TestOptOut(SecurityCase):

    def _blacklist(self, number):
        self.env["phone.blacklist"].sudo()._add([number])

    def test_clearing_the_leads_phone_does_not_bypass_the_opt_out(self):
        self._blacklist("+34600000701")
        self.own_lead.write({"mobile": False, "phone": False})
        with self.assertRaisesRegex(UserError, "opted out"):
            self.env["strato.whatsapp.message"].with_user(self.salesman)._enqueue_for_leads(
                self.own_lead.with_user(self.salesman), template=self.template, raise_on_skip=True)

    def test_opt_out_after_queueing_fails_the_marketing_message_at_send_time(self):
        messages, _skipped = self.env["strato.whatsapp.message"]._enqueue_for_leads(self.own_lead, template=self.template)
        self._blacklist("+34600000701")
        self.own_lead.mobile = "+34 600 00 07 99"  # the lead's number no longer says it
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertRecordValues(messages, [{"state": "failed", "failure_type": "opted_out"}])
        self.assertEqual(self._sent(), [])

    def test_salesperson_records_but_cannot_lift_an_opt_out(self):
        self.wa_admin.groups_id |= self.env.ref("sales_team.group_sale_salesman_all_leads")
        lead = self.own_lead.with_user(self.salesman)
        lead.whatsapp_opt_out = True
        self.assertTrue(self.env["phone.blacklist"].sudo().search([("number", "=", "+34600000701")]))
        self.assertIn("Ana Vendedora", self.own_lead.message_ids[0].body)
        with self.assertRaises(AccessError):
            lead.whatsapp_opt_out = False
        self.env.invalidate_all()
        self.assertTrue(self.own_lead.whatsapp_opt_out)
        self.own_lead.with_user(self.wa_admin).whatsapp_opt_out = False
        self.assertFalse(self.own_lead.whatsapp_opt_out)
        self.assertIn("Admin WhatsApp", self.own_lead.message_ids[0].body)

    def test_users_without_whatsapp_rights_cannot_probe_the_blacklist(self):
        self._blacklist("+34600000701")
        plain_lead = self._lead(name="Plain", mobile="+34 600 00 07 01", user_id=self.plain_salesman.id)
        with self.assertRaises(AccessError):
            plain_lead.with_user(self.plain_salesman).read(["whatsapp_opt_out"])
        with self.assertRaises(AccessError):
            self.env["crm.lead"].with_user(self.plain_salesman).onchange(
                {"name": "x", "mobile": "+34600000701"}, ["mobile"], {"whatsapp_opt_out": {}})


@tagged("post_install", "-at_install")
class TestGraphApiUrl(SecurityCase):

    def test_whatsapp_admin_cannot_point_the_token_at_another_host(self):
        account = self.account.with_user(self.wa_admin)
        for url in ("http://10.0.0.1", "http://169.254.169.254#", "https://graph.facebook.com/v1/x#",
                    "https://graph.facebook.com@10.0.0.1", "https://graph.facebook.com?x=1",
                    "http://127.0.0.1:8899", "https://intranet.local", "http://graph.facebook.com"):
            with self.subTest(url=url), self.assertRaises(ValidationError), self.env.cr.savepoint():
                account.write({"graph_api_url": url})
        account.write({"graph_api_url": "https://graph.facebook.com"})
        account.write({"graph_api_url": "https://waba-v2.360dialog.io"})

    def test_system_administrator_may_use_the_simulator(self):
        self.account.with_user(self.env.ref("base.user_admin")).write({"graph_api_url": "http://127.0.0.1:8899"})
        with self.assertRaises(ValidationError):
            self.account.write({"graph_api_url": "http://127.0.0.1:8899/v25.0#"})

    def test_test_connection_never_echoes_a_foreign_answer(self):
        class Internal(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = b"<html><body>INTERNAL-SECRET admin panel</body></html>"
                self.send_response(500)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Internal)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        self.account.graph_api_url = f"http://127.0.0.1:{server.server_port}"
        result = self.account.with_user(self.wa_admin).action_test_connection()
        self.assertEqual(result["params"]["type"], "danger")
        self.assertNotIn("INTERNAL-SECRET", str(result))


@tagged("post_install", "-at_install")
class TestEnvironmentOnNeutralizedCopies(WhatsappCase):

    def test_neutralized_database_ignores_production_variables(self):
        self.env["ir.config_parameter"].sudo().set_param("database.is_neutralized", True)
        environ = {"WHATSAPP_PHONE_NUMBER_ID": SIM_ACCOUNT["phone_number_id"], "WHATSAPP_ACCESS_TOKEN": "production"}
        self.account.access_token = False
        self.assertFalse(self.env["strato.whatsapp.account"]._sync_from_environment(environ))
        self.assertFalse(self.account.access_token)


@tagged("post_install", "-at_install")
class TestMethodSignatures(WhatsappCase):

    def test_refusal_arguments_match_the_methods(self):
        lead = self.env["crm.lead"]
        for name in METHOD_ARGS:
            self.assertTrue(inspect.signature(getattr(lead, name)).parameters, name)


@tagged("post_install", "-at_install")
class TestSudoIsJustified(BaseCase):
    """Every ``sudo()`` of the addon's code has its reason on its line or the line above (``# sudo: ...``),
    so that a reviewer reads the check that makes it safe where the rights are dropped."""

    def test_every_sudo_says_why(self):
        addon = pathlib.Path(__file__).resolve().parent.parent
        unexplained = []
        for path in sorted(addon.rglob("*.py")):
            if "tests" in path.relative_to(addon).parts:
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines):
                if ".sudo()" not in line or line.lstrip().startswith("#"):
                    continue
                if "# sudo:" not in line and not (number and "# sudo:" in lines[number - 1]):
                    unexplained.append(f"{path.relative_to(addon)}:{number + 1}")
        self.assertEqual(unexplained, [], "sudo() without a '# sudo:' reason on its line or the line above")


@tagged("post_install", "-at_install")
class TestInboundOptOutsAndNames(WhatsappHttpCase):
    """What a contact does on WhatsApp, through the webhook route as Meta sends it."""

    def _blacklisted(self, number):
        return bool(self.env["phone.blacklist"].sudo().search([("number", "=", number)]))

    def test_meta_stop_promotions_button_opts_the_number_out(self):
        self._receive(self._inbound(wa_id="34600000801", msg_type="button", body="Stop promotions"))
        self.assertTrue(self._blacklisted("+34600000801"))
        self._receive(self._inbound(wa_id="34600000802", msg_type="button", body="Sí, me interesa"))
        self.assertFalse(self._blacklisted("+34600000802"), "other buttons are answers, not opt-outs")

    def test_user_preferences_stop_and_resume(self):
        self._receive(self._inbound(wa_id="34600000803", body="Hola"))
        lead = self.env["strato.whatsapp.conversation"].search([("wa_id", "=", "34600000803")]).lead_id

        def preference(value, when):
            return payloads.envelope(SIM_ACCOUNT["waba_id"], [payloads.change({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": SIM_ACCOUNT["display_phone_number"],
                             "phone_number_id": SIM_ACCOUNT["phone_number_id"]},
                "contacts": [{"profile": {"name": "Lucía"}, "wa_id": "34600000803"}],
                "user_preferences": [{"wa_id": "34600000803", "detail": "User requested to stop marketing messages",
                                      "category": "marketing_messages", "value": value, "timestamp": when}],
            }, field="user_preferences")])

        self._receive(preference("stop", payloads.timestamp_text()))
        self.assertTrue(self._blacklisted("+34600000803"))
        self.assertIn("WhatsApp", lead.message_ids[0].body)
        self._receive(preference("resume", payloads.timestamp_text()))
        self.assertFalse(self._blacklisted("+34600000803"))

    def test_profile_name_that_is_a_formula_is_neutralised(self):
        self._receive(self._inbound(wa_id="34600000804", profile='=HYPERLINK("http://evil","x")'))
        lead = self.env["strato.whatsapp.conversation"].search([("wa_id", "=", "34600000804")]).lead_id
        self.assertTrue(lead)
        for value in (lead.name, lead.contact_name):
            self.assertFalse(value.startswith(("=", "+", "-", "@")), value)

    def test_reaction_to_another_contacts_message_changes_nothing(self):
        first = self._receive(self._inbound(wa_id="34600000805", body="Mi mensaje"))
        self._receive(self._inbound(wa_id="34600000806", msg_type="reaction", message_id=first.wamid, emoji="💩"))
        self.assertFalse(first.reaction_emoji)
