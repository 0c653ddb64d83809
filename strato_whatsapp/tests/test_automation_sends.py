"""Automation rules with a "Send WhatsApp" action, through base_automation, counted at the simulator:
one template per lead and rule, whatever the trigger and however often the rule fires."""
from odoo import fields
from odoo.tests import Form, tagged

from .common import WhatsappCase, WithGraphSimulator


@tagged("post_install", "-at_install")
class TestAutomationSendsOnce(WithGraphSimulator, WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.template = cls.env["strato.whatsapp.template"].create({
            "name": "bienvenida_inmobiliaria", "account_id": cls.account.id, "language": "es",
            "category": "MARKETING", "status": "approved", "body": "Hola {{1}}, gracias por contactarnos."})
        cls.template.variable_ids.fallback = "cliente"  # a lead without contact name still gets it
        cls.won_stage = cls.env["crm.stage"].search([], order="sequence desc", limit=1)
        cls.tag = cls.env["crm.tag"].create({"name": "Inversor"})
        cls.lead_model = cls.env["ir.model"]._get("crm.lead")
        cls.numbers = iter(range(10, 99))

    def _rule(self, trigger, field=None, **values):
        fields_ids = [self.env["ir.model.fields"]._get("crm.lead", field).id] if field else []
        return self.env["base.automation"].create({
            "name": f"WhatsApp {trigger}", "model_id": self.lead_model.id, "trigger": trigger,
            "trigger_field_ids": [(6, 0, fields_ids)], **values,
            "action_server_ids": [(0, 0, {
                "name": "Bienvenida", "model_id": self.lead_model.id, "state": "strato_whatsapp",
                "strato_whatsapp_template_id": self.template.id})],
        })

    def _new_lead(self, **values):
        return self.env["crm.lead"].create({"name": "Interesado", "mobile": f"+34 600 00 11 {next(self.numbers):02d}",
                                            **values})

    def _sent_to(self, lead):
        """Messages Meta accepted for ``lead``, after the send cron ran."""
        self.env["strato.whatsapp.message"]._cron_send()
        messages = self.env["strato.whatsapp.message"].search([("lead_id", "=", lead.id)])
        accepted = self.simulator.sent()["by_callback"]
        return sum(accepted.get(f"swa:{message.id}", 0) for message in messages)

    def _new_transaction(self):
        """What a later request sees: the per-transaction memory of rules already run is gone."""
        self.env.flush_all()
        self.env.cr.precommit.data.pop("strato_whatsapp.automation_done", None)

    def test_on_save_sends_one_template_for_a_new_lead(self):
        self._rule("on_create_or_write")
        lead = self._new_lead()
        self.assertTrue(lead.whatsapp_number)  # crm recomputes a dozen stored fields while creating it: the rule fires each time
        self.assertEqual(self._sent_to(lead), 1)
        self.assertEqual(len(lead.message_ids.filtered(lambda m: "not sent" in (m.body or ""))), 0)

    def test_a_skipped_lead_gets_no_empty_conversation_in_the_inbox(self):
        """A free-text automation for a lead who never wrote (its window is closed) is skipped: no
        conversation appears in the inbox for it."""
        rule = self._rule("on_create")
        rule.action_server_ids.write({"strato_whatsapp_template_id": False, "strato_whatsapp_body": "Hola"})
        lead = self._new_lead()
        self.assertFalse(self.env["strato.whatsapp.conversation"].search([("lead_id", "=", lead.id)]))
        self.assertEqual(self.env["strato.whatsapp.message"].search_count([("lead_id", "=", lead.id)]), 0)
        self.assertTrue(lead.message_ids.filtered(lambda m: "not sent" in (m.body or "")), "the lead says why")

    def test_every_record_trigger_sends_once(self):
        stage_field = "stage_id"
        cases = [
            ("on_create", None, {}, lambda: self._new_lead()),
            ("on_write", None, {}, lambda: self._new_lead().write({"description": "<p>visita</p>"})),
            ("on_stage_set", stage_field, {"trg_field_ref": self.won_stage.id},
             lambda: self._new_lead().write({"stage_id": self.won_stage.id})),
            ("on_user_set", "user_id", {}, lambda: self._new_lead(user_id=False).write({"user_id": self.salesman.id})),
            ("on_tag_set", "tag_ids", {"trg_field_ref": self.tag.id},
             lambda: self._new_lead().write({"tag_ids": [(4, self.tag.id)]})),
            ("on_priority_set", "priority", {"trg_selection_field_id": self.env["ir.model.fields.selection"].search([
                ("field_id.model", "=", "crm.lead"), ("field_id.name", "=", "priority"), ("value", "=", "3")]).id},
             lambda: self._new_lead().write({"priority": "3"})),
            ("on_archive", "active", {}, lambda: self._new_lead().action_archive()),
            ("on_unarchive", "active", {}, lambda: self._new_lead(active=False).action_unarchive()),
            ("on_message_received", None, {}, lambda: self._new_lead().message_post(
                body="Me interesa", message_type="comment", subtype_xmlid="mail.mt_comment", author_id=self.env["res.partner"].create({"name": "C"}).id)),
        ]
        for trigger, field, values, act in cases:
            with self.subTest(trigger=trigger):
                rule = self._rule(trigger, field, **values)
                before = self.env["crm.lead"].with_context(active_test=False).search([]).ids
                act()
                lead = self.env["crm.lead"].with_context(active_test=False).search([("id", "not in", before)])
                self.assertEqual(len(lead), 1)
                self.assertEqual(self._sent_to(lead), 1, f"{trigger} sent once")
                rule.active = False
                self._new_transaction()

    def test_the_same_template_is_not_sent_again_within_the_window(self):
        self._rule("on_create_or_write")
        lead = self._new_lead()
        self._new_transaction()
        lead.write({"description": "<p>otra visita</p>"})  # another save, later
        self._new_transaction()
        lead.write({"priority": "2"})
        self.assertEqual(self._sent_to(lead), 1)
        self.env["ir.config_parameter"].sudo().set_param("strato_whatsapp.automation_repeat_hours", "0")
        self._new_transaction()
        lead.write({"priority": "1"})
        self.assertEqual(self._sent_to(lead), 2, "with the window off, each save sends")

    def test_the_composer_asks_before_sending_the_same_template_again(self):
        lead = self._new_lead(user_id=self.salesman.id)
        self.env["strato.whatsapp.message"]._enqueue_for_leads(lead, template=self.template)
        form = Form(self.env(user=self.salesman)["strato.whatsapp.composer"].with_context(
            active_model="crm.lead", active_ids=lead.ids))
        self.assertEqual(form.mode, "template", "the window is closed: only a template")
        form.template_id = self.template
        self.assertIn("already got this message", form.repeat_warning)
        composer = form.save()
        with self.assertRaisesRegex(Exception, "Send Again"):
            composer.action_send()
        composer.send_again = True
        composer.action_send()
        self.assertEqual(self._sent_to(lead), 2, "a person asked explicitly")

    def test_a_failed_message_does_not_count_as_sent(self):
        self._rule("on_create_or_write")
        lead = self._new_lead()
        message = self.env["strato.whatsapp.message"].search([("lead_id", "=", lead.id)])
        message.write({"state": "failed", "failed_at": fields.Datetime.now()})
        self._new_transaction()
        lead.write({"priority": "2"})
        self.assertEqual(self._sent_to(lead), 1, "the failed one was replaced by one that went out")
