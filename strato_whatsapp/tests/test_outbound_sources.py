import base64

from odoo.exceptions import UserError, ValidationError
from odoo.tests import Form, tagged

from .test_outbound_queue import OutboundCase


@tagged("post_install", "-at_install")
class TestComposer(OutboundCase):

    def _composer(self, leads, user=None):
        env = self.env(user=user or self.salesman)
        return Form(env["strato.whatsapp.composer"].with_context(active_model="crm.lead", active_ids=leads.ids))

    def test_free_text_when_the_window_is_open(self):
        form = self._composer(self.lead)
        self.assertEqual(form.mode, "text")
        self.assertIn("you can write freely", form.reach_text)
        form.body = "Le envío la ficha"
        form.save().action_send()
        message = self.lead.with_user(self.salesman).whatsapp_message_ids.filtered(lambda m: m.direction == "outbound")
        self.assertEqual(message.body, "Le envío la ficha")
        self.assertEqual(message.author_id, self.salesman)
        self._send()
        self.assertEqual(message.state, "sent")

    def test_template_with_preview_when_the_window_is_closed(self):
        closed = self._lead(name="Ventana cerrada", contact_name="Martín", mobile="+34 600 00 02 21",
                            user_id=self.salesman.id)
        form = self._composer(closed)
        self.assertEqual(form.mode, "template")
        self.assertIn("only an approved template", form.reach_text)
        form.template_id = self.template
        self.assertIn("Hola Martín, gracias", form.preview)
        form.save().action_send()
        self._send()
        self.assertEqual(self._sent_payloads()[0]["template"]["components"][0]["parameters"][0]["text"], "Martín")

    def test_free_text_is_not_offered_when_the_window_is_closed(self):
        closed = self._lead(name="Cerrada", mobile="+34 600 00 02 22", user_id=self.salesman.id)
        form = self._composer(closed)
        self.assertEqual(form.mode, "template")
        with self.assertRaises(AssertionError, msg="the choice is read-only: free text could only fail"):
            form.mode = "text"
        forced = self.env["strato.whatsapp.composer"].with_user(self.salesman).create({
            "lead_ids": [(6, 0, closed.ids)], "mode": "text", "body": "Hola"})  # as over RPC
        with self.assertRaisesRegex(UserError, "24 hours"):
            forced.action_send()

    def test_attachment_goes_through_the_media_endpoint(self):
        form = self._composer(self.lead)
        form.body = "Plano"
        form.attachment = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
        form.save().action_send()
        self._send()
        payload = self._sent_payloads()[0]
        self.assertEqual(payload["type"], "image")
        self.assertEqual(payload["image"]["caption"], "Plano")

    def test_many_leads_from_the_list(self):
        closed = self._lead(name="Cerrada 2", contact_name="Pilar", mobile="+34 600 00 02 23")
        invalid = self._lead(name="Mal número", phone="12")
        form = Form(self.env["strato.whatsapp.composer"].with_context(
            active_model="crm.lead", active_ids=(invalid | closed | self.lead).ids))
        self.assertEqual(form.mode, "template")
        self.assertIn("1 of 3 leads", form.reach_text)
        form.template_id = self.template
        self.assertEqual(form.preview_lead_id, closed, "the preview is of a lead the message goes to")
        self.assertIn("Hola Pilar", form.preview)
        result = form.save().action_send()
        self.assertIn("2 message(s) queued, 1 lead(s) skipped", result["params"]["message"])
        self.assertIn("no valid WhatsApp number", invalid.message_ids[0].body)


@tagged("post_install", "-at_install")
class TestServerAction(OutboundCase):

    def _welcome_rule(self):
        action = self.env["ir.actions.server"].create({
            "name": "Bienvenida por WhatsApp", "model_id": self.env.ref("crm.model_crm_lead").id,
            "state": "strato_whatsapp", "strato_whatsapp_template_id": self.template.id})
        return self.env["base.automation"].create({
            "name": "Al crear un lead: bienvenida_inmobiliaria", "model_id": self.env.ref("crm.model_crm_lead").id,
            "trigger": "on_create", "action_server_ids": [(6, 0, action.ids)]})

    def test_automation_rule_on_lead_creation_queues_the_welcome_template(self):
        self._welcome_rule()
        leads = self.env["crm.lead"].create([
            {"name": "Nuevo 1", "contact_name": "Ana", "mobile": "+34 600 00 02 31"},
            {"name": "Nuevo 2", "contact_name": "Luis", "mobile": "600 00 02 32"},
            {"name": "Sin número", "contact_name": "Eva"},
        ])
        messages = self.env["strato.whatsapp.message"].search([("lead_id", "in", leads.ids)])
        self.assertEqual(len(messages), 2)
        self.assertEqual(set(messages.mapped("state")), {"queued"})
        self.assertIn("no valid WhatsApp number", leads[2].message_ids[0].body)
        self._send()
        sent = self._sent_payloads()
        self.assertEqual(sorted(payload["to"] for payload in sent), ["34600000231", "34600000232"])
        self.assertEqual({payload["template"]["name"] for payload in sent}, {"bienvenida_inmobiliaria"})

    def test_action_needs_a_lead_model_and_something_to_send(self):
        with self.assertRaises(ValidationError):
            self.env["ir.actions.server"].create({
                "name": "Mal", "model_id": self.env.ref("crm.model_crm_lead").id, "state": "strato_whatsapp"})
        with self.assertRaises(ValidationError):
            self.env["ir.actions.server"].create({
                "name": "Mal modelo", "model_id": self.env.ref("base.model_res_partner").id,
                "state": "strato_whatsapp", "strato_whatsapp_body": "Hola"})

    def test_free_text_action_reaches_only_open_windows(self):
        action = self.env["ir.actions.server"].create({
            "name": "Recordatorio", "model_id": self.env.ref("crm.model_crm_lead").id,
            "state": "strato_whatsapp", "strato_whatsapp_body": "Le recordamos su visita de mañana"})
        closed = self._lead(name="Cerrada", mobile="+34 600 00 02 41")
        action.with_context(active_model="crm.lead", active_ids=(self.lead | closed).ids).run()
        messages = self.env["strato.whatsapp.message"].search([("lead_id", "in", (self.lead | closed).ids),
                                                               ("direction", "=", "outbound")])
        self.assertEqual(messages.lead_id, self.lead)
        self.assertIn("24 hours", closed.message_ids[0].body)


@tagged("post_install", "-at_install")
class TestComposerWithoutForm(OutboundCase):

    def test_created_directly_like_an_rpc_client_would(self):
        composer = self.env["strato.whatsapp.composer"].with_user(self.salesman).create({
            "lead_ids": [(6, 0, self.lead.ids)], "body": "Por RPC"})
        self.assertEqual(composer.account_id, self.account, "the number the contact already talks to")
        self.assertEqual(composer.mode, "text")
        composer.action_send()
        self._send()
        self.assertEqual(self._sent_payloads()[0]["text"]["body"], "Por RPC")


@tagged("post_install", "-at_install")
class TestSendingToSharedNumbers(OutboundCase):

    def test_two_selected_leads_with_one_number_share_a_new_conversation(self):
        first = self._lead(name="Uno", contact_name="Ana", mobile="+34 600 00 05 01")
        second = self._lead(name="Dos", contact_name="Ana", mobile="600 00 05 01")
        messages, skipped = self.env["strato.whatsapp.message"]._enqueue_for_leads(first | second, template=self.template)
        self.assertFalse(skipped)
        self.assertEqual(len(messages), 2)
        self.assertEqual(len(messages.conversation_id), 1)

    def test_salesperson_writes_a_number_whose_conversation_is_on_a_colleagues_lead(self):
        colleague_lead = self._lead(name="Del compañero", mobile="+34 600 00 05 02", user_id=self.other_salesman.id)
        conversation = self._conversation(colleague_lead, "34600000502")
        mine = self._lead(name="Mío", contact_name="Eva", mobile="+34 600 00 05 02", user_id=self.salesman.id)
        Message = self.env["strato.whatsapp.message"].with_user(self.salesman)
        messages, skipped = Message._enqueue_for_leads(mine.with_user(self.salesman), template=self.template)
        self.assertFalse(messages)
        self.assertIn("Otro Vendedor", skipped[mine], "the notice names whom to ask")
        self.assertEqual(conversation.lead_id, colleague_lead, "the conversation stays with the open lead it is on")
