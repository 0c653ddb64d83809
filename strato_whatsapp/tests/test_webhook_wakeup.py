import json
from unittest.mock import patch

from odoo.tests import tagged

from ..models.strato_whatsapp_webhook_event import StratoWhatsappWebhookEvent
from .common import SIM_ACCOUNT, WhatsappCase, payloads


@tagged("post_install", "-at_install")
class TestWebhookWakeUp(WhatsappCase):
    """Only the POST that finds the processing cron idle wakes it; a run consumes every wake-up it leaves
    behind, including the ones made while it was working."""

    def setUp(self):
        super().setUp()
        # As under HttpCase: the route's own transaction (registry.cursor()) shares the test's cursor.
        self.registry.enter_test_mode(self.cr)
        self.addCleanup(self.registry.leave_test_mode)
        self.Event = self.env["strato.whatsapp.webhook.event"].sudo()
        self.Wakeup = self.env["strato.whatsapp.webhook.wakeup"]
        self.cron = self.env.ref("strato_whatsapp.ir_cron_whatsapp_webhook")
        self.env["ir.cron.trigger"].sudo().search([("cron_id", "=", self.cron.id)]).unlink()
        self.env.cr.execute("UPDATE strato_whatsapp_webhook_wakeup SET requested_at = NULL")
        self.sequence = 0

    def _body(self, wa_id="34600000201"):
        self.sequence += 1
        payload = payloads.inbound_message(
            SIM_ACCOUNT["phone_number_id"], SIM_ACCOUNT["display_phone_number"], wa_id, "Marta",
            body=f"Hola {self.sequence}", waba_id=SIM_ACCOUNT["waba_id"], wamid=f"wamid.wake.{self.sequence}")
        return json.dumps(payload).encode()

    def _triggers(self):
        return self.env["ir.cron.trigger"].sudo().search_count([("cron_id", "=", self.cron.id)])

    def test_only_the_first_post_creates_a_trigger(self):
        for _i in range(3):
            self.Event._store(self.account, self._body())
        self.assertEqual(self._triggers(), 1)
        self.assertTrue(self.Wakeup._requested())
        self.assertEqual(len(self.Event.search([("state", "=", "pending")])), 3)

    def test_the_stored_event_carries_its_account_and_company(self):
        event = self.Event._store(self.account, self._body())
        self.assertRecordValues(event, [{"account_id": self.account.id, "company_id": self.account.company_id.id,
                                         "state": "pending", "attempt_count": 0}])

    def test_an_account_deleted_meanwhile_stores_nothing(self):
        gone = self.env["strato.whatsapp.account"].browse(self.account.id + 100000)
        events_before = self.Event.search_count([])
        with self.assertLogs("odoo.addons.strato_whatsapp.models.strato_whatsapp_webhook_event", "WARNING"):
            self.assertFalse(self.Event._store(gone, self._body()))
        self.assertEqual(self.Event.search_count([]), events_before)
        self.assertEqual(self._triggers(), 0)

    def test_a_run_consumes_the_wake_ups_and_the_next_post_wakes_again(self):
        self.Event._store(self.account, self._body())
        self.Event._cron_process()
        self.assertFalse(self.Wakeup._requested())
        self.assertFalse(self.Event.search([("state", "!=", "done")]))
        self.Event._store(self.account, self._body())
        self.assertEqual(self._triggers(), 2, "the first POST after a run wakes the cron again")
        self.assertTrue(self.Wakeup._requested())

    def test_an_event_stored_while_the_run_works_is_processed_by_that_run(self):
        """The race a plain "skip when a trigger is due" loses: the POST sees the trigger of the run in
        progress, and that run must not end without its event."""
        self.Event._store(self.account, self._body())
        late_body = self._body(wa_id="34600000202")
        original_process = StratoWhatsappWebhookEvent._process
        stored_late = []

        def process_and_receive_another(events):
            original_process(events)
            if not stored_late:
                stored_late.append(events._store(self.account, late_body))

        with patch.object(StratoWhatsappWebhookEvent, "_process", process_and_receive_another):
            self.Event._cron_process()
        self.assertEqual(stored_late[0].state, "done")
        self.assertFalse(self.Wakeup._requested())
        messages = self.env["strato.whatsapp.message"].search([("wamid", "like", "wamid.wake.")])
        self.assertEqual(len(messages), 2)

    def test_a_wake_up_no_run_consumed_is_made_again(self):
        """A run that failed leaves its wake-up behind: after a minute, POSTs stop relying on it."""
        self.Event._store(self.account, self._body())
        self.env.cr.execute("UPDATE strato_whatsapp_webhook_wakeup SET requested_at = requested_at - interval '59 seconds'")
        self.Event._store(self.account, self._body())
        self.assertEqual(self._triggers(), 1, "still recent: relied on")
        self.env.cr.execute("UPDATE strato_whatsapp_webhook_wakeup SET requested_at = requested_at - interval '2 seconds'")
        self.Event._store(self.account, self._body())
        self.assertEqual(self._triggers(), 2, "stale: the cron is woken again")

    def test_a_run_out_of_time_hands_over_to_a_new_run(self):
        event = self.Event._store(self.account, self._body())
        self.Event._cron_process(run_seconds=0)
        self.assertEqual(event.state, "pending")
        self.assertEqual(self._triggers(), 2, "a fresh run is due to take over")
        self.Event._cron_process()
        self.assertEqual(event.state, "done")

    def test_chatter_posts_yield_to_new_events(self):
        for _i in range(3):
            self.Event._store(self.account, self._body())
        self.Event._claim_batch(10)._process()
        Message = self.env["strato.whatsapp.message"]
        self.assertEqual(Message.search_count([("chatter_pending", "=", True)]), 3)
        self.assertTrue(Message._post_pending_chatter(max_seconds=0), "some posts are left for later")
        self.assertEqual(Message.search_count([("chatter_pending", "=", True)]), 2)
        self.assertFalse(Message._post_pending_chatter(max_seconds=10))
        self.assertFalse(Message.search_count([("chatter_pending", "=", True)]))


@tagged("post_install", "-at_install")
class TestWebhookStoreTransaction(WhatsappCase):
    """The route's own case, which test cursors never are: the request's transaction was just committed,
    so the storing statement itself switches the new transaction to READ COMMITTED."""

    def test_a_post_in_a_fresh_transaction_stores_under_read_committed(self):
        body = json.dumps(payloads.inbound_message(
            SIM_ACCOUNT["phone_number_id"], SIM_ACCOUNT["display_phone_number"], "34600000209", "Marta",
            body="Hola", waba_id=SIM_ACCOUNT["waba_id"], wamid="wamid.wake.fresh")).encode()
        with self.registry.cursor() as cr:  # a real connection: its data is rolled back below
            env = self.env(cr=cr)
            account = env.ref("strato_whatsapp.demo_account")  # committed, so visible to this transaction
            cr.commit()
            event = env["strato.whatsapp.webhook.event"].sudo()._store(account, body)
            cr.execute("SHOW transaction_isolation")
            isolation = cr.fetchone()[0]
            stored = event.read(["account_id", "company_id", "state"])
            expected = (account.id, account.company_id.id)
            cr.rollback()
        self.assertEqual(isolation, "read committed")
        self.assertEqual((stored[0]["account_id"][0], stored[0]["company_id"][0]), expected)
        self.assertEqual(stored[0]["state"], "pending")
