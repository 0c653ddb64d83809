"""The send queue's public contract: an outbound message created in state ``queued`` by any code path
is sent by the cron ``strato_whatsapp.ir_cron_whatsapp_send``, built from its own fields when it is sent,
with the rules checked then. Tested through the cron and the simulator, for messages made by plain
``create`` (as another module, an import or an integration would)."""
import threading
from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from .common import SIM_ACCOUNT, WhatsappCase, WhatsappHttpCase, WithGraphSimulator, start_graph_simulator

OUTBOUND_LOGGER = "odoo.addons.strato_whatsapp.models.strato_whatsapp_message"


class ContractCase(WithGraphSimulator, WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lead = cls._lead(name="Ático Retiro", contact_name="Marta", mobile="+34 600 00 09 01",
                             user_id=cls.salesman.id)
        cls.conversation = cls._conversation(cls.lead, "34600000901", last_inbound_at=fields.Datetime.now())
        cls.send_cron = cls.env.ref("strato_whatsapp.ir_cron_whatsapp_send")

    def _create(self, **values):
        return self.env["strato.whatsapp.message"].create({
            "conversation_id": self.conversation.id, "direction": "outbound", "state": "queued", **values})

    def _sent_bodies(self):
        return [request["json"] for request in self.simulator.requests(path_contains="/messages")]

    def _notification(self, message):
        return self.env["mail.notification"].search([("strato_whatsapp_message_id", "=", message.id)])


@tagged("post_install", "-at_install")
class TestPlainCreate(ContractCase):

    def test_plain_create_is_due_now_wakes_the_cron_and_is_sent_once(self):
        triggers = self.env["ir.cron.trigger"].search_count([("cron_id", "=", self.send_cron.id)])
        message = self._create(body="Hola Marta, ¿le viene bien el jueves?")
        self.assertTrue(message.next_attempt_at, "due now, not never")
        self.assertGreater(self.env["ir.cron.trigger"].search_count([("cron_id", "=", self.send_cron.id)]), triggers)
        self.assertEqual(message.lead_id, self.lead)
        self.assertTrue(message.mail_message_id, "its note is on the lead")
        self.assertEqual(self.conversation.last_message_at, message.message_at, "the inbox moves with it")
        self.env["strato.whatsapp.message"]._cron_send()
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(message.state, "sent")
        self.assertEqual(self._sent_bodies(), [{
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "34600000901", "type": "text",
            "text": {"body": "Hola Marta, ¿le viene bien el jueves?", "preview_url": False},
            "biz_opaque_callback_data": f"swa:{message.id}"}])
        self.assertEqual(self._notification(message).notification_status, "pending")

    def test_integration_user_over_rpc(self):
        integration = new_test_user(self.env, login="wa_integration", name="Integración",
                                    groups="base.group_system,sales_team.group_sale_manager")
        message = self.env["strato.whatsapp.message"].with_user(integration).create({
            "conversation_id": self.conversation.id, "direction": "outbound", "body": "Desde el ERP"})
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(message.state, "sent")
        self.assertEqual(self._sent_bodies()[0]["text"]["body"], "Desde el ERP")

    def test_what_is_sent_is_read_from_the_message_at_send_time(self):
        message = self._create(body="Primera versión", reply_to_wamid="wamid.original")
        message.body = "Versión corregida antes de salir"
        self.env["strato.whatsapp.message"]._cron_send()
        sent = self._sent_bodies()[0]
        self.assertEqual(sent["text"]["body"], "Versión corregida antes de salir")
        self.assertEqual(sent["context"], {"message_id": "wamid.original"})

    def test_five_photos_to_one_contact_go_out_in_one_run(self):
        """Meta allows short bursts to one user: a salesperson's photos of a flat do not wait 6 s each."""
        photos = self.env["strato.whatsapp.message"]
        for index in range(5):
            attachment = self.env["ir.attachment"].create({
                "name": f"salon{index}.png", "raw": b"\x89PNG\r\n\x1a\n" + bytes([index]) * 64, "mimetype": "image/png"})
            photos |= self._create(message_type="image", attachment_ids=[(4, attachment.id)], body=f"Foto {index}")
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(photos.mapped("state"), ["sent"] * 5)

    def test_a_postponed_message_wakes_the_cron_when_it_is_due(self):
        messages = self.env["strato.whatsapp.message"].browse()
        for index in range(12):  # more than a burst: the last ones wait for the contact's bucket
            messages |= self._create(body=f"Mensaje {index}")
        self.env["ir.cron.trigger"].search([("cron_id", "=", self.send_cron.id)]).unlink()
        self.env["strato.whatsapp.message"]._cron_send()
        waiting = messages.filtered(lambda message: message.state == "queued")
        self.assertTrue(waiting, "some wait for the pair limit")
        first_due = min(waiting.mapped("next_attempt_at"))
        triggers = self.env["ir.cron.trigger"].search([("cron_id", "=", self.send_cron.id)])
        self.assertIn(first_due, triggers.mapped("call_at"), "woken when the first one is due, not a minute later")

    def test_retry_of_a_failed_message_without_a_stored_request(self):
        """The demo's failed message (and any made before the request was built at send time) has no
        stored request: Retry from the message form sends its text, not an empty body."""
        failed = self._create(body="¿Sigue disponible el piso?", state="failed", error_code=131026,
                              error_message="Message undeliverable", failed_at=fields.Datetime.now())
        self.assertFalse(failed.payload)
        failed.with_user(self.salesman).action_retry()
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(failed.state, "sent")
        self.assertEqual(self._sent_bodies()[0]["text"]["body"], "¿Sigue disponible el piso?")
        self.assertEqual(self._notification(failed).notification_status, "pending")

    @mute_logger(OUTBOUND_LOGGER)
    def test_out_of_window_text_fails_with_the_window_reason(self):
        self.conversation.last_inbound_at = fields.Datetime.now() - timedelta(days=2)
        message = self._create(body="Hola")
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertRecordValues(message, [{"state": "failed", "failure_type": "window_closed"}])
        self.assertIn("24", message.error_message)
        self.assertIn("24", self.lead.message_ids[0].body, "a note tells the salesperson")
        self.assertEqual(self._notification(message).notification_status, "exception")
        self.assertEqual(self._sent_bodies(), [])

    @mute_logger(OUTBOUND_LOGGER)
    def test_empty_text_fails_instead_of_an_empty_send(self):
        message = self._create(body=False)
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertRecordValues(message, [{"state": "failed", "failure_type": "parameter"}])
        self.assertEqual(self._sent_bodies(), [])

    def test_template_without_frozen_parameters_is_rendered_at_send_time(self):
        template = self.env["strato.whatsapp.template"].create({
            "name": "recordatorio_visita", "account_id": self.account.id, "language": "es",
            "category": "UTILITY", "status": "approved", "body": "Hola {{1}}, le recordamos su visita."})
        message = self._create(message_type="template", template_id=template.id)
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(message.state, "sent")
        self.assertEqual(self._sent_bodies()[0]["template"]["components"],
                         [{"type": "body", "parameters": [{"type": "text", "text": "Marta"}]}])

    @mute_logger(OUTBOUND_LOGGER)
    def test_rate_limit_then_success_sends_once(self):
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 429, "count": 1,
                                    "retry_after": 0}])
        message = self._create(body="Reintento")
        Message = self.env["strato.whatsapp.message"]
        Message._cron_send()
        self.assertEqual(message.state, "queued")
        message.next_attempt_at = fields.Datetime.now()
        Message._cron_send()
        self.assertEqual(message.state, "sent")
        self.assertEqual(self.simulator.sent()["by_callback"], {f"swa:{message.id}": 1}, "accepted exactly once")

    @mute_logger(OUTBOUND_LOGGER)
    def test_flaky_network_sends_exactly_once(self):
        """The connection fails before Meta has the request (refused): retried, then sent once."""
        self.account.graph_api_url = "http://127.0.0.1:9"  # nothing listens there
        message = self._create(body="Red inestable")
        Message = self.env["strato.whatsapp.message"]
        Message._cron_send()
        self.assertEqual(message.state, "queued", "retried later, not failed")
        self.account.graph_api_url = self.simulator.url
        message.next_attempt_at = fields.Datetime.now()
        Message._cron_send()
        Message._cron_send()
        self.assertEqual(message.state, "sent")
        self.assertEqual(self.simulator.sent()["by_callback"], {f"swa:{message.id}": 1}, "accepted exactly once")

    @mute_logger(OUTBOUND_LOGGER)
    def test_connection_dropped_after_the_request_is_never_resent_blindly(self):
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "drop", "count": 1}])
        message = self._create(body="¿Llegó?")
        self.env["strato.whatsapp.message"]._cron_send()
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(message.state, "unknown")
        self.assertEqual(len(self.simulator.requests(path_contains="/messages")), 1)
        self.assertEqual(self._notification(message).failure_type, "whatsapp_outcome_unknown")



@tagged("post_install", "-at_install")
class TestCancel(ContractCase):
    """An agent stops queued messages (from the list, the form or the chat) before they go out."""

    def test_cancelled_messages_are_never_sent_and_show_as_cancelled(self):
        first, second = self._create(body="Uno"), self._create(body="Dos")
        (first | second).with_user(self.salesman).action_cancel()
        self.assertEqual((first | second).mapped("state"), ["cancelled", "cancelled"])
        self.assertFalse(first.next_attempt_at)
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(self._sent_bodies(), [], "nothing went to Meta")
        self.assertEqual(self._notification(first).notification_status, "canceled", "the chatter icon says so")
        values = first.with_user(self.salesman)._chat_values()[0]
        self.assertEqual((values["can_cancel"], values["can_retry"], values["is_cancelled"]), (False, False, True))

    def test_a_list_selection_cancels_what_still_waits_and_says_what_was_left(self):
        waiting = self._create(body="Espera")
        sent = self._create(body="Ya salió")
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(sent.state, "sent")
        waiting.write({"state": "queued", "next_attempt_at": fields.Datetime.now()})
        result = (waiting | sent).with_user(self.salesman).action_cancel()
        self.assertEqual((waiting.state, sent.state), ("cancelled", "sent"))
        self.assertEqual(result["params"]["type"], "warning")
        self.assertIn("1 of the selected messages", result["params"]["message"])
        with self.assertRaisesRegex(UserError, "still waiting"):
            sent.with_user(self.salesman).action_cancel()

    def test_a_message_the_cron_holds_is_left_to_go_out(self):
        """Committed rows and two transactions: the cron's claim holds the row; Cancel skips it, never waits."""
        registry = self.env.registry
        with registry.cursor() as cr:
            env = self.env(cr=cr)
            lead = env["crm.lead"].create({"name": "Reservado", "mobile": "+34 600 10 99 01"})
            conversation = env["strato.whatsapp.conversation"].create({
                "account_id": env.ref("strato_whatsapp.demo_account").id, "wa_id": "34600109901", "lead_id": lead.id,
                "last_inbound_at": fields.Datetime.now()})
            message_id = env["strato.whatsapp.message"].create({
                "conversation_id": conversation.id, "direction": "outbound", "state": "queued", "body": "En camino"}).id
        try:
            with registry.cursor() as cron_cr, registry.cursor() as agent_cr:
                cron_cr.execute("SELECT id FROM strato_whatsapp_message WHERE id = %s FOR NO KEY UPDATE", [message_id])
                agent = self.env(cr=agent_cr)  # the rows and users of this test are not committed
                with self.assertRaisesRegex(UserError, "already being sent"):
                    agent["strato.whatsapp.message"].browse(message_id).action_cancel()
                agent_cr.rollback()
                cron_cr.rollback()
            with registry.cursor() as cr:
                cr.execute("SELECT state FROM strato_whatsapp_message WHERE id = %s", [message_id])
                self.assertEqual(cr.fetchone()[0], "queued")
        finally:
            with registry.cursor() as cr:
                self.env(cr=cr)["crm.lead"].browse(lead.id).unlink()
                self.env(cr=cr)["strato.whatsapp.conversation"].browse(conversation.id).unlink()

    def test_only_who_may_write_to_the_lead_cancels(self):
        message = self._create(body="De otro")
        outsider = new_test_user(self.env, login="wa_outsider_cancel", groups="strato_whatsapp.group_whatsapp_user")
        with self.assertRaises(AccessError):
            message.with_user(outsider).action_cancel()
        self.assertEqual(message.state, "queued")


@tagged("post_install", "-at_install")
class TestDeliveryShownTheOdooWay(WhatsappHttpCase):
    """Meta's statuses, through the webhook route, move the chatter's delivery icon, live."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lead = cls._lead(name="Iconos", mobile="+34 600 00 09 11", user_id=cls.salesman.id)
        cls.conversation = cls._conversation(cls.lead, "34600000911")

    def _notification(self, message):
        return self.env["mail.notification"].search([("strato_whatsapp_message_id", "=", message.id)])

    def _live_updates(self, partner):
        self.env.cr.precommit.run()  # bus rows are written when the transaction commits
        return self.env["bus.bus"].search([("channel", "like", f'"res.partner",{partner.id}]'),
                                           ("message", "like", "mail.notification")])

    def test_sent_delivered_read_and_failed_with_metas_reason(self):
        message = self._message(self.conversation, "Hola", direction="outbound", wamid="wamid.icons.1",
                                state="sent", author_id=self.salesman.id)
        note = message.mail_message_id
        self.assertEqual(note.author_id, self.env.user.partner_id)
        self.env["bus.bus"].search([]).unlink()
        for meta_status, state, shown in (("delivered", "delivered", "sent"), ("read", "read", "sent")):
            self._receive(self._status("wamid.icons.1", meta_status, "34600000911"))
            self.assertEqual(message.state, state)
            self.assertEqual(self._notification(message).notification_status, shown)
        self.assertTrue(self._live_updates(note.author_id), "open chatters are told")

        failing = self._message(self.conversation, "Otro", direction="outbound", wamid="wamid.icons.2", state="sent")
        self._receive(self._status("wamid.icons.2", "failed", "34600000911", errors=[131026]))
        notification = self._notification(failing)
        self.assertEqual(notification.notification_status, "exception")
        self.assertIn("could not deliver to this number", notification.failure_reason)
        self.assertEqual(notification, notification._filtered_for_web_client(), "shown in the chatter")


@tagged("post_install", "-at_install")
class TestTwoWorkers(WhatsappCase):
    """Two cron workers at once on 200 plainly created messages (real committed rows, real threads, the
    simulator): every message is sent exactly once."""

    def test_two_workers_send_each_plainly_created_message_exactly_once(self):
        spec = dict(SIM_ACCOUNT, phone_number_id="108000000000902", waba_id="208000000000902")
        simulator = start_graph_simulator(type(self), accounts=(spec,))
        registry = self.env.registry
        with registry.cursor() as cr:
            env = self.env(cr=cr)
            account = env["strato.whatsapp.account"].create({
                "name": "Dos workers", "phone_number_id": "108000000000902", "access_token": SIM_ACCOUNT["access_token"],
                "graph_api_url": simulator.url, "messages_per_second": 1000})
            leads = env["crm.lead"].create([{"name": f"W{index}", "mobile": f"+34 600 10 {index // 100:02d} {index % 100:02d}"}
                                            for index in range(200)])
            conversations = env["strato.whatsapp.conversation"].create([{
                "account_id": account.id, "wa_id": f"346001{index // 100:02d}{index % 100:02d}", "lead_id": lead.id,
                "last_inbound_at": fields.Datetime.now()} for index, lead in enumerate(leads)])
            env["strato.whatsapp.message"].create([{
                "conversation_id": conversation.id, "direction": "outbound", "state": "queued", "body": f"m{index}"}
                for index, conversation in enumerate(conversations)])
            account_id, lead_ids = account.id, leads.ids
        errors = []
        root = self.env.ref("base.user_root").id  # looked up here: the test's cursor is not for threads

        def worker():
            try:
                with registry.cursor() as cr:
                    self.env(cr=cr, user=root)["strato.whatsapp.message"]._cron_send()
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        try:
            threads = [threading.Thread(target=worker) for _index in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            self.assertFalse(errors)
            with registry.cursor() as cr:
                cr.execute("SELECT state, count(*) FROM strato_whatsapp_message WHERE account_id = %s GROUP BY state",
                           [account_id])
                states = dict(cr.fetchall())
            self.assertEqual(states, {"sent": 200})
            self.assertEqual(sorted(simulator.sent()["by_callback"].values()), [1] * 200, "each accepted once")
        finally:
            with registry.cursor() as cr:
                env = self.env(cr=cr)
                env["strato.whatsapp.account"].browse(account_id).unlink()
                env["crm.lead"].browse(lead_ids).unlink()
