from datetime import datetime
from unittest.mock import patch

from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import WhatsappHttpCase, payloads


@tagged("post_install", "-at_install")
class TestStatusWebhooks(WhatsappHttpCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lead = cls._lead(name="Estados", mobile="+34 600 00 00 60", user_id=cls.salesman.id)
        cls.conversation = cls._conversation(cls.lead, "34600000060")

    def _outbound(self, wamid="wamid.out.1", state="sent"):
        return self._message(self.conversation, "Hola", direction="outbound", wamid=wamid, state=state)

    def test_statuses_move_forward_only(self):
        message = self._outbound()
        self._receive(self._status(message.wamid, "read", "34600000060", timestamp=1767225660))
        self.assertEqual(message.state, "read")
        self.assertEqual(message.read_at, datetime(2026, 1, 1, 0, 1))
        self._receive(self._status(message.wamid, "delivered", "34600000060", timestamp=1767225600))
        self.assertEqual(message.state, "read", "a late delivered never undoes read")
        self.assertEqual(message.delivered_at, datetime(2026, 1, 1, 0, 0), "its time is still recorded")
        self._receive(self._status(message.wamid, "failed", "34600000060"))
        self.assertEqual(message.state, "read", "failed after read describes nothing new")

    def test_same_status_twice_applies_once(self):
        message = self._outbound()
        payload = self._status(message.wamid, "delivered", "34600000060", timestamp=1767225600)
        self._receive(payload)
        self._receive(payload)
        self.assertEqual(message.state, "delivered")
        self.assertEqual(message.delivered_at, datetime(2026, 1, 1, 0, 0))

    def test_pricing_and_conversation_are_kept(self):
        message = self._outbound()
        self._receive(self._status(message.wamid, "delivered", "34600000060", category="marketing"))
        self.assertRecordValues(message, [{
            "pricing_category": "marketing", "pricing_billable": True, "pricing_model": "PMP",
            "conversation_origin": "marketing"}])
        self.assertTrue(message.meta_conversation_id)

    def test_failed_says_what_to_do_and_keeps_metas_words_for_administrators(self):
        message = self._outbound(state="sent")
        self._receive(self._status(message.wamid, "failed", "34600000060", errors=[131026]))
        self.assertRecordValues(message, [{"state": "failed", "error_code": 131026, "failure_type": "recipient"}])
        self.assertTrue(message.failed_at)
        as_agent = message.with_user(self.salesman)
        self.assertEqual(as_agent.error_message, (
            "WhatsApp could not deliver to this number: it may not use WhatsApp, or the contact's app is out "
            "of date. Check the number, or call the contact."))
        self.assertEqual(as_agent._chat_values()[0]["error"], as_agent.error_message, "no code in the chat")
        with self.assertRaises(AccessError, msg="Meta's own words are for administrators"):
            as_agent.read(["error_details"])
        self.assertIn("131026", message.error_details)
        self.assertIn("undeliverable", message.error_details.lower())
        note = self.lead.message_ids[0]
        self.assertIn("Check the number", note.body)
        self.assertNotIn("131026", note.body)
        notification = self.env["mail.notification"].search([("strato_whatsapp_message_id", "=", message.id)])
        self.assertRecordValues(notification, [{"notification_status": "exception",
                                                "failure_type": "whatsapp_recipient",
                                                "failure_reason": as_agent.error_message}])

    def test_status_before_its_message_is_kept_and_applied_later(self):
        self._receive(self._status("wamid.out.early", "delivered", "34600000060", timestamp=1767225600))
        self._receive(self._status("wamid.out.early", "sent", "34600000060", timestamp=1767225590))
        early = self.env["strato.whatsapp.early.status"].search([("wamid", "=", "wamid.out.early")])
        self.assertEqual(len(early), 2)
        message = self._outbound(wamid=False, state="sending")
        message.wamid = "wamid.out.early"  # the send transaction commits after Meta's statuses arrived
        self.assertEqual(message.state, "delivered")
        self.assertEqual(message.sent_at, datetime(2025, 12, 31, 23, 59, 50))
        self.assertFalse(early.exists(), "applied statuses are forgotten")

    def test_status_finds_its_message_by_callback_data_before_the_wamid_is_stored(self):
        message = self._outbound(wamid=False, state="sending")
        self._receive(self._status("wamid.out.cb", "sent", "34600000060",
                                   biz_opaque_callback_data=f"swa:{message.id}"))
        self.assertEqual(message.state, "sent")
        self.assertEqual(message.wamid, "wamid.out.cb")

    def test_template_status_update(self):
        template = self.env["strato.whatsapp.template"].create({
            "name": "bienvenida_inmobiliaria", "account_id": self.account.id, "body": "Hola {{1}}",
            "status": "pending"})
        template.meta_template_id = "594425479261596"
        payload = payloads.template_status_update(self.account.business_account_id, "594425479261596",
                                                  "bienvenida_inmobiliaria", "es", "APPROVED")
        self._receive(payload)
        self.assertEqual(template.status, "approved")
        self._receive(payloads.template_status_update(self.account.business_account_id, "594425479261596",
                                                      "bienvenida_inmobiliaria", "es", "REJECTED",
                                                      reason="INVALID_FORMAT", timestamp=1767225999))
        self.assertRecordValues(template, [{"status": "rejected", "rejected_reason": "INVALID_FORMAT"}])


@tagged("post_install", "-at_install")
class TestWebhookEventReplay(WhatsappHttpCase):

    @mute_logger("odoo.addons.strato_whatsapp.models.strato_whatsapp_webhook_event")
    def test_failed_processing_is_kept_retried_and_replayable(self):
        Event = self.env["strato.whatsapp.webhook.event"]
        Message = type(self.env["strato.whatsapp.message"])
        payload = self._inbound(wa_id="34600000070", body="No me pierdas")
        with patch.object(Message, "_receive", side_effect=RuntimeError("database hiccup")):
            self.assertEqual(self._post(payload).status_code, 200)
            Event._cron_process()
        event = Event.search([])
        self.assertRecordValues(event, [{"state": "failed", "attempt_count": 1}])
        self.assertIn("database hiccup", event.error)
        self.assertEqual(event.summary, "Message from Lucía (+34 600 00 00 70)", "whose message it was")
        self.assertTrue(event.next_attempt_at)
        mine = [("account_id", "=", self.account.id)]
        self.assertFalse(self.env["strato.whatsapp.message"].search(mine), "nothing half-applied")
        self.assertFalse(Event._claim_batch(10), "not retried before its time")

        event.action_replay()
        self.assertEqual(event.state, "done")
        message = self.env["strato.whatsapp.message"].search(mine)
        self.assertEqual(message.body, "No me pierdas")
        event.action_replay()
        self.assertEqual(self.env["strato.whatsapp.message"].search_count(mine), 1, "replaying twice is harmless")

    def test_invalid_items_do_not_hide_valid_ones(self):
        payload = self._inbound(wa_id="34600000071", body="válido")
        value = payload["entry"][0]["changes"][0]["value"]
        value["messages"].append({"from": "34600000072", "type": "text", "text": {"body": "sin id"}})
        with mute_logger("odoo.addons.strato_whatsapp.models.strato_whatsapp_webhook_event"):
            messages = self._receive(payload)
        self.assertEqual(messages.mapped("body"), ["válido"])
        self.assertEqual(self.env["strato.whatsapp.webhook.event"].search([]).state, "done")

    @mute_logger("odoo.addons.strato_whatsapp.models.strato_whatsapp_webhook_event")
    def test_one_faulty_event_in_a_batch_does_not_hold_back_the_others(self):
        Event = self.env["strato.whatsapp.webhook.event"]
        Message = type(self.env["strato.whatsapp.message"])
        original = Message._receive

        def receive(records, account, events):
            if any(event.wa_id == "34600000079" for event in events):
                raise ValueError("bad data from this sender")
            return original(records, account, events)

        for wa_id in ("34600000077", "34600000079", "34600000078"):
            self.assertEqual(self._post(self._inbound(wa_id=wa_id, body=f"de {wa_id}")).status_code, 200)
        with patch.object(Message, "_receive", receive):
            Event._cron_process()
        events = Event.search([], order="id")
        self.assertEqual(events.mapped("state"), ["done", "failed", "done"])
        self.assertIn("bad data", events[1].error)
        bodies = self.env["strato.whatsapp.message"].search([("account_id", "=", self.account.id)]).mapped("body")
        self.assertEqual(sorted(bodies), ["de 34600000077", "de 34600000078"])
        chatter = self.env["strato.whatsapp.message"].search([("account_id", "=", self.account.id)]).mail_message_id
        self.assertEqual(len(chatter), 2, "the chatter pass posted both")

    def test_early_status_is_applied_by_the_next_run_when_its_message_appeared_meanwhile(self):
        lead = self._lead(name="Tarde", mobile="+34 600 00 06 01")
        conversation = self._conversation(lead, "34600000601")
        self._receive(self._status("wamid.out.late", "delivered", "34600000601"))
        message = self._message(conversation, "hola", direction="outbound", state="sending")
        # The wamid lands by raw SQL, as a concurrent sender's commit would: no ORM hook sees it.
        self.env.flush_all()
        self.env.cr.execute("UPDATE strato_whatsapp_message SET wamid = 'wamid.out.late', state = 'sent' WHERE id = %s",
                            [message.id])
        message.invalidate_recordset()
        self.env["strato.whatsapp.webhook.event"]._cron_process()
        self.assertEqual(message.state, "delivered")
        self.assertFalse(self.env["strato.whatsapp.early.status"].search([("wamid", "=", "wamid.out.late")]))

    def test_template_events_signed_by_another_app_are_ignored(self):
        other = self.env["strato.whatsapp.account"].create({
            "name": "Otra app", "phone_number_id": "107000000000001", "business_account_id": "207000000000001",
            "app_secret": "otra-app"})
        template = self.env["strato.whatsapp.template"].create({
            "name": "ajena", "account_id": other.id, "body": "Hola", "status": "pending"})
        template.meta_template_id = "777"
        payload = payloads.template_status_update("207000000000001", "777", "ajena", "es", "APPROVED")
        payload["entry"][0]["id"] = self.account.business_account_id  # routed (and signed) as our app
        payload["entry"].append({"id": "207000000000001", "time": 1, "changes": payload["entry"][0]["changes"]})
        self._receive(payload)
        self.assertEqual(template.status, "pending")
