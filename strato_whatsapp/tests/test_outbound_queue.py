from datetime import timedelta

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..tools.send_pool import SENDS_IN_FLIGHT
from .. import const
from .common import SIM_ACCOUNT, WhatsappCase, WithGraphSimulator

OUTBOUND_LOGGER = "odoo.addons.strato_whatsapp.models.strato_whatsapp_message"


class OutboundCase(WithGraphSimulator, WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lead = cls._lead(name="Piso Chamberí", contact_name="Lucía Fernández", mobile="+34 600 00 02 01",
                             user_id=cls.salesman.id)
        cls.conversation = cls._conversation(cls.lead, "34600000201", last_inbound_at=fields.Datetime.now())
        cls.template = cls.env["strato.whatsapp.template"].create({
            "name": "bienvenida_inmobiliaria", "account_id": cls.account.id, "language": "es",
            "category": "MARKETING", "status": "approved",
            "body": "Hola {{1}}, gracias por contactarnos. Estamos aquí para ayudarte con tu búsqueda inmobiliaria."})

    def setUp(self):
        super().setUp()
        self.Message = self.env["strato.whatsapp.message"]

    def _send(self):
        self.Message._cron_send()

    def _notification(self, message):
        """The delivery notification Odoo's chatter shows for ``message`` (as for e-mail and SMS)."""
        return self.env["mail.notification"].search([("strato_whatsapp_message_id", "=", message.id)])

    def _sent_payloads(self):
        return [request["json"] for request in self.simulator.requests(path_contains="/messages")]


@tagged("post_install", "-at_install")
class TestOutboundQueue(OutboundCase):

    def test_text_inside_the_window_goes_out_with_its_wamid(self):
        messages, skipped = self.Message._enqueue_for_leads(self.lead, body="¿Le viene bien el jueves?")
        self.assertFalse(skipped)
        self.assertRecordValues(messages, [{"state": "queued", "direction": "outbound", "message_type": "text",
                                            "conversation_id": self.conversation.id}])
        self.assertRecordValues(self._notification(messages), [{
            "notification_type": "whatsapp", "notification_status": "ready", "mail_message_id": messages.mail_message_id.id}])
        self._send()
        self.assertEqual(messages.state, "sent")
        self.assertTrue(messages.wamid.startswith("wamid."))
        self.assertEqual(messages.attempt_count, 1)
        self.assertEqual(self._sent_payloads(), [{
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "34600000201",
            "type": "text", "text": {"body": "¿Le viene bien el jueves?", "preview_url": False},
            "biz_opaque_callback_data": f"swa:{messages.id}"}])
        self.assertEqual(self._notification(messages).notification_status, "pending", "Odoo's 'Sent'")
        self.assertEqual(messages.mail_message_id.subtype_id, self.env.ref("mail.mt_note"),
                         "a note: followers get no e-mail for it")

    def test_template_payload_fills_variables_from_the_lead(self):
        messages, _skipped = self.Message._enqueue_for_leads(self.lead, template=self.template)
        self.assertIn("Hola Lucía Fernández, gracias", messages.body)
        self._send()
        payload = self._sent_payloads()[0]
        self.assertEqual(payload["type"], "template")
        self.assertEqual(payload["template"], {
            "name": "bienvenida_inmobiliaria", "language": {"code": "es"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Lucía Fernández"}]}]})
        self.assertEqual(messages.state, "sent")

    def test_reply_quotes_the_message(self):
        messages, _skipped = self.Message._enqueue_for_leads(self.lead, body="Sí", reply_to_wamid="wamid.in.1")
        self._send()
        self.assertEqual(self._sent_payloads()[0]["context"], {"message_id": "wamid.in.1"})

    def test_media_is_uploaded_then_sent_by_id(self):
        attachment = self.env["ir.attachment"].create({
            "name": "plano.pdf", "raw": b"%PDF-1.4 plano", "mimetype": "application/pdf"})
        messages, _skipped = self.Message._enqueue_for_leads(self.lead, body="El plano", attachment=attachment)
        self.assertEqual(messages.message_type, "document")
        self._send()
        upload = self.simulator.requests(path_contains="/media")[0]
        self.assertEqual(upload["method"], "POST")
        payload = self._sent_payloads()[0]
        self.assertEqual(payload["document"], {"id": messages.media_id, "caption": "El plano", "filename": "plano.pdf"})
        self.assertEqual(messages.state, "sent")

    def test_rules_checked_before_queueing(self):
        closed = self._lead(name="Sin ventana", mobile="+34 600 00 02 02")
        with self.assertRaisesRegex(UserError, "24 hours"):
            self.Message._enqueue_for_leads(closed, body="Hola", raise_on_skip=True)
        _messages, skipped = self.Message._enqueue_for_leads(closed, body="Hola")
        self.assertIn(closed, skipped)
        self.assertIn("not sent", closed.message_ids[0].body)
        no_number = self._lead(name="Sin número", phone="600 12")
        with self.assertRaisesRegex(UserError, "no valid WhatsApp number"):
            self.Message._enqueue_for_leads(no_number, template=self.template, raise_on_skip=True)
        opted_out = self._lead(name="Baja", mobile="+34 600 00 02 03")
        opted_out.whatsapp_opt_out = True
        with self.assertRaisesRegex(UserError, "opted out"):
            self.Message._enqueue_for_leads(opted_out, template=self.template, raise_on_skip=True)
        draft = self.template.copy({"name": "borrador", "status": "draft"})
        with self.assertRaisesRegex(UserError, "not approved"):
            self.Message._enqueue_for_leads(self.lead, template=draft)
        self.assertFalse(self._sent_payloads())

    def test_rules_checked_again_at_send_time(self):
        messages, _skipped = self.Message._enqueue_for_leads(self.lead, body="Hola")
        self.conversation.last_inbound_at = fields.Datetime.now() - timedelta(days=2)
        self._send()
        self.assertRecordValues(messages, [{"state": "failed", "failure_type": "window_closed"}])
        self.assertFalse(self._sent_payloads(), "nothing reached Meta")
        self.assertIn("template", self.lead.message_ids[0].body + messages.error_message)

    def test_same_recipient_waits_for_the_pair_rate_limit_after_a_burst(self):
        burst = self.Message.browse()
        for index in range(const.PAIR_BURST):
            burst |= self.Message._enqueue_for_leads(self.lead, body=f"mensaje {index}")[0]
        extra, _skipped = self.Message._enqueue_for_leads(self.lead, body="uno más")
        self._send()
        self.assertEqual(set(burst.mapped("state")), {"sent"}, "a short burst goes at once")
        self.assertEqual(extra.state, "queued")
        self.assertEqual(extra.attempt_count, 0, "waiting is not a failed attempt")
        self.assertGreater(extra.next_attempt_at, fields.Datetime.now() + timedelta(seconds=3))
        self.assertEqual(len(self._sent_payloads()), const.PAIR_BURST)


@tagged("post_install", "-at_install")
class TestOutboundErrors(OutboundCase):

    def _queue(self):
        messages, _skipped = self.Message._enqueue_for_leads(self.lead, template=self.template)
        return messages

    @mute_logger(OUTBOUND_LOGGER)
    def test_rate_limit_retries_after_retry_after(self):
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 429, "code": 130429,
                                    "retry_after": 30, "count": 1}])
        message = self._queue()
        self._send()
        self.assertRecordValues(message, [{"state": "queued", "attempt_count": 1}])
        self.assertGreaterEqual(message.next_attempt_at, fields.Datetime.now() + timedelta(seconds=29))
        message.next_attempt_at = fields.Datetime.now()
        self._send()
        self.assertRecordValues(message, [{"state": "sent", "attempt_count": 2}])

    @mute_logger(OUTBOUND_LOGGER)
    def test_server_errors_back_off_then_give_up(self):
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 500, "code": 131000}])
        message = self._queue()
        delays = []
        for _attempt in range(6):
            self._send()
            if message.state != "queued":
                break
            delays.append((message.next_attempt_at - fields.Datetime.now()).total_seconds())
            message.next_attempt_at = fields.Datetime.now()
        self.assertEqual(message.state, "failed")
        self.assertEqual(message.failure_type, "retries_exhausted")
        self.assertEqual(message.attempt_count, 6)
        self.assertTrue(all(later > earlier for earlier, later in zip(delays, delays[1:])), delays)

    @mute_logger(OUTBOUND_LOGGER)
    def test_undeliverable_fails_with_what_to_do_and_a_note(self):
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 400, "code": 131026,
                                    "message": "Message undeliverable"}])
        message = self._queue()
        self._send()
        self.assertRecordValues(message, [{"state": "failed", "failure_type": "recipient", "error_code": 131026}])
        self.assertIn("Check the number, or call the contact", message.error_message)
        self.assertNotIn("131026", message.error_message, "Meta's code is for administrators")
        self.assertIn("131026", message.error_details)
        self.assertIn("Message undeliverable", message.error_details, "Meta's own words are kept")
        self.assertIn("Check the number", self.lead.message_ids[0].body)
        self.assertRecordValues(self._notification(message), [{
            "notification_status": "exception", "failure_type": "whatsapp_recipient",
            "failure_reason": message.error_message}])

    @mute_logger(OUTBOUND_LOGGER)
    def test_invalid_token_stops_the_account_and_tells_admins(self):
        self.account.access_token = "revoked"
        first = self._queue()
        other = self._lead(name="Otro", contact_name="Otro", mobile="+34 600 00 02 09")
        second, _skipped = self.Message._enqueue_for_leads(other, template=self.template)
        self._send()
        self.assertTrue(self.account.token_invalid)
        self.assertEqual((first | second).mapped("state"), ["queued", "queued"], "nothing lost, nothing failed")
        self.assertTrue(self.account.activity_ids, "administrators get an activity")
        self.assertEqual(len(self.simulator.requests(path_contains="/messages")), 1, "no hammering")
        self._send()
        self.assertEqual(len(self.simulator.requests(path_contains="/messages")), 1, "stopped while invalid")
        self.account.access_token = SIM_ACCOUNT["access_token"]
        (first | second).next_attempt_at = fields.Datetime.now()
        self._send()
        self.assertEqual((first | second).mapped("state"), ["sent", "sent"])

    def test_account_refused_while_sends_are_in_flight_loses_and_repeats_nothing(self):
        """Several calls overlap once Meta has accepted one; when Meta then refuses the account, the calls
        already made are recorded as they ended and the messages not handed over wait in the queue."""
        leads = self.env["crm.lead"]
        for index in range(8):
            lead = self._lead(name=f"Piso {index}", contact_name=f"Cliente {index}", mobile=f"+34 600 00 03 {index:02d}")
            self._conversation(lead, f"346000003{index:02d}", last_inbound_at=fields.Datetime.now())
            leads |= lead
        messages, _skipped = self.Message._enqueue_for_leads(leads, body="¿Le interesa visitar el piso?")
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 401, "code": 190,
                                    "to": "34600000304"},
                                   {"path_contains": "/messages", "kind": "delay", "delay": 0.05}])
        with mute_logger(OUTBOUND_LOGGER):
            self._send()
        self.assertTrue(self.account.token_invalid)
        by_recipient = {}
        for request in self.simulator.requests(path_contains="/messages"):
            by_recipient.setdefault(request["json"]["to"], 0)
            by_recipient[request["json"]["to"]] += 1
        self.assertTrue(all(count == 1 for count in by_recipient.values()), by_recipient)
        for message in messages:
            wa_id = message.conversation_id.wa_id
            if wa_id == "34600000304":
                self.assertEqual(message.state, "queued", "refused with the account: waits for a new token")
            elif wa_id in by_recipient:
                self.assertEqual(message.state, "sent", wa_id)
                self.assertTrue(message.wamid)
            else:
                self.assertEqual(message.state, "queued", wa_id)
                self.assertEqual(message.attempt_count, 0, "never handed over: no attempt counted")
        self.assertLessEqual(len(by_recipient), 5 + SENDS_IN_FLIGHT - 1, "at most the calls already in flight went on")
        self.account.access_token = SIM_ACCOUNT["access_token"]
        self.simulator.set_faults([])
        messages.filtered(lambda message: message.state == "queued").next_attempt_at = fields.Datetime.now()
        self._send()
        self.assertEqual(set(messages.mapped("state")), {"sent"})
        sent_to = [request["json"]["to"] for request in self.simulator.requests(path_contains="/messages")]
        self.assertEqual(len(sent_to) - sent_to.count("34600000304"), 7, "each other message was sent once")

    def test_worker_death_leaves_outcome_unknown_never_a_blind_resend(self):
        message = self._queue()
        message.write({"state": "sending", "sending_started_at": fields.Datetime.now() - timedelta(minutes=5),
                       "attempt_count": 1})
        with mute_logger(OUTBOUND_LOGGER):
            self._send()
        self.assertEqual(message.state, "unknown")
        self.assertFalse(self._sent_payloads(), "not resent by itself")
        self.assertIn("may or may not", message.error_message)
        message.action_retry()
        self._send()
        self.assertEqual(message.state, "sent")

    def test_marketing_opt_out_from_meta_marks_the_lead(self):
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 400, "code": 131050}])
        message = self._queue()
        with mute_logger(OUTBOUND_LOGGER):
            self._send()
        self.assertEqual(message.failure_type, "opted_out")
        self.assertTrue(self.lead.whatsapp_opt_out)


@tagged("post_install", "-at_install")
class TestSkipLockedConcurrency(WhatsappCase):
    """Two workers claiming from the same queue never take the same message (real, committed rows)."""

    def test_two_cursors_claim_disjoint_batches(self):
        registry = self.env.registry
        with registry.cursor() as setup_cr:
            env = self.env(cr=setup_cr)
            account = env["strato.whatsapp.account"].create({"name": "Concurrencia", "phone_number_id": "108000000000001"})
            lead = env["crm.lead"].create({"name": "Concurrencia", "mobile": "+34 600 00 03 01"})
            conversation = env["strato.whatsapp.conversation"].create(
                {"account_id": account.id, "wa_id": "34600000301", "lead_id": lead.id})
            env["strato.whatsapp.message"].create([{
                "conversation_id": conversation.id, "direction": "outbound", "body": f"m{index}",
                "state": "queued", "next_attempt_at": fields.Datetime.now() - timedelta(seconds=1)}
                for index in range(40)])
            account_id, lead_id = account.id, lead.id
        try:
            with registry.cursor() as cr1, registry.cursor() as cr2:
                Message1 = self.env(cr=cr1)["strato.whatsapp.message"]
                Message2 = self.env(cr=cr2)["strato.whatsapp.message"]
                account1 = self.env(cr=cr1)["strato.whatsapp.account"].browse(account_id)
                account2 = self.env(cr=cr2)["strato.whatsapp.account"].browse(account_id)
                first = Message1._claim(account1, 25)
                second = Message2._claim(account2, 25)
                self.assertEqual(len(first), 25)
                self.assertEqual(len(second), 15)
                self.assertFalse(set(first.ids) & set(second.ids))
                cr1.rollback()
                cr2.rollback()
        finally:
            with registry.cursor() as cleanup_cr:
                env = self.env(cr=cleanup_cr)
                env["strato.whatsapp.account"].browse(account_id).unlink()
                env["crm.lead"].browse(lead_id).unlink()


    def test_one_worker_keeps_an_account_across_its_commits(self):
        """Each worker paces its sends with its own throttle, so two must never send for one account at
        once: the account lock outlives the commits made after each batch."""
        registry = self.env.registry
        with registry.cursor() as cr1, registry.cursor() as cr2:
            Message1 = self.env(cr=cr1)["strato.whatsapp.message"]
            Message2 = self.env(cr=cr2)["strato.whatsapp.message"]
            self.assertTrue(Message1._lock_account(self.account))
            cr1.commit()
            self.assertFalse(Message2._lock_account(self.account), "still held after the first worker's commit")
            Message1._unlock_account(self.account)
            self.assertTrue(Message2._lock_account(self.account))
            Message2._unlock_account(self.account)
            cr1.rollback()
            cr2.rollback()

@tagged("post_install", "-at_install")
class TestOutboundRobustness(OutboundCase):

    def _queue(self):
        messages, _skipped = self.Message._enqueue_for_leads(self.lead, template=self.template)
        return messages

    @mute_logger(OUTBOUND_LOGGER)
    def test_no_answer_after_sending_is_outcome_unknown_not_a_resend(self):
        self.account.graph_api_url = self.simulator.url
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "drop", "count": 1}])
        message = self._queue()
        self._send()
        self.assertEqual(message.state, "unknown")
        self.assertIn("may or may not", message.error_message)
        self._send()
        self.assertEqual(len(self._sent_payloads()), 1, "never sent again by itself")

    @mute_logger(OUTBOUND_LOGGER)
    def test_permission_error_stops_the_account_once(self):
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 403, "code": 10,
                                    "message": "Permission denied"}])
        first = self._queue()
        for _run in range(3):
            self._send()
        self.assertEqual(first.state, "queued")
        self.assertTrue(self.account.sending_stopped_reason)
        self.assertEqual(len(self._sent_payloads()), 1, "one refusal, then silence")
        self.assertEqual(len(self.account.activity_ids), len(self.account.activity_ids.user_id), "no duplicate activities")
        notes = self.account.message_ids.filtered(lambda mail: "Sending is stopped" in (mail.body or ""))
        self.assertEqual(len(notes), 1)
        self.simulator.set_faults([])
        self.account.action_resume_sending()
        first.next_attempt_at = fields.Datetime.now()
        self._send()
        self.assertEqual(first.state, "sent")

    @mute_logger(OUTBOUND_LOGGER)
    def test_a_message_that_cannot_be_prepared_fails_alone(self):
        attachment = self.env["ir.attachment"].create({"name": "x.pdf", "raw": b"%PDF", "mimetype": "application/pdf"})
        broken, _skipped = self.Message._enqueue_for_leads(self.lead, body="adjunto", attachment=attachment)
        attachment.unlink()
        good = self._queue()
        good.next_attempt_at = broken.next_attempt_at
        self._send()
        self.assertEqual(broken.state, "failed")
        self.assertEqual(good.state, "sent")


@tagged("post_install", "-at_install")
class TestChatterNoteLanguage(OutboundCase):

    def test_note_is_the_message_and_the_status_is_odoos_own(self):
        """The note holds what was written (no status text in a language chosen by whoever ran the cron);
        the status is a notification, which the web client labels in each reader's language."""
        self.env["res.lang"]._activate_lang("es_ES")
        self.salesman.lang = "es_ES"
        Message = self.env["strato.whatsapp.message"].with_user(self.salesman)
        message, _skipped = Message._enqueue_for_leads(self.lead.with_user(self.salesman), body="Hola\nadiós")
        message = message.sudo()
        self._send()
        self.assertEqual(message.state, "sent")
        body = str(message.mail_message_id.body)
        self.assertEqual(body, '<p class="o_strato_whatsapp"><i class="fa fa-whatsapp" title="WhatsApp"></i> '
                               'Hola<br>adiós</p>')
        self.assertEqual(self._notification(message).notification_status, "pending")
