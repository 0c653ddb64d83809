import threading
import time

from odoo import SUPERUSER_ID, api
from odoo.addons.bus.models.bus import dispatch
from odoo.tests import tagged

from .common import SIM_ACCOUNT, WhatsappHttpCase, start_graph_simulator

# The tour checks the clock before the answer goes out: the "cron" waits this long after queueing.
SEND_AFTER_SECONDS = 1.5


class CronWorkers(threading.Thread):
    """The cron workers of production, for a browser test: send the queue, process received webhooks.

    A test transaction never commits, so the bus's NOTIFY (a post-commit hook) never fires; this thread
    wakes the open websockets itself after each round, as the bus dispatcher would.
    """

    def __init__(self, registry, interval=0.3, send=True):
        super().__init__(name="strato-whatsapp-cron-workers", daemon=True)
        self.registry = registry
        self.send = send
        self.interval = interval
        self.stopped = threading.Event()
        self.errors = []
        self._queued_since = {}

    def run(self):
        threading.current_thread().testing = True  # like the test's own threads: no real commits
        # The test thread uses the shared test cursor without its lock until the browser is on the page
        # (logging in, opening it): only start once the page's websocket has subscribed.
        before = self._websockets()
        while not (self._websockets() - before) and not self.stopped.wait(0.05):
            pass
        while not self.stopped.wait(self.interval):
            try:
                self._round()
            except Exception as error:  # noqa: BLE001 - reported by the test, not lost in the thread
                self.errors.append(error)
            self._wake_websockets()

    def _round(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            if self.send and self._sending_is_due(env):
                env["strato.whatsapp.message"]._cron_send()
            env["strato.whatsapp.webhook.event"]._cron_process()

    def _sending_is_due(self, env):
        queued = env["strato.whatsapp.message"].search([("state", "=", "queued"), ("direction", "=", "outbound")])
        now = time.monotonic()
        for message_id in queued.ids:
            self._queued_since.setdefault(message_id, now)
        return any(now - self._queued_since[message_id] >= SEND_AFTER_SECONDS for message_id in queued.ids)

    @staticmethod
    def _websockets():
        return {websocket for websockets in list(dispatch._channels_to_ws.values()) for websocket in list(websockets)}

    def _wake_websockets(self):
        for websocket in self._websockets():
            websocket.trigger_notification_dispatching()

    def stop(self):
        self.stopped.set()
        self.join(10)


@tagged("post_install", "-at_install")
class TestChatTour(WhatsappHttpCase):
    """In a real browser: a lead's chat shows what the contact sent, and its answer's ticks go live."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.simulator = start_graph_simulator(
            cls, webhook_url=cls.base_url() + cls.WEBHOOK, auto_status=True, status_delay=0.3)
        cls.account.graph_api_url = cls.simulator.url
        cls.lead = cls._lead(name="Piso en Malasaña", contact_name="Lucía Fernández", mobile="+34 600 00 04 01",
                             user_id=cls.salesman.id)

    def _tour_on_the_lead(self, tour, send):
        """The salesperson's browser on the lead, with the cron workers behind it (``send``: the send queue
        too, else only the bus that carries changes to the page)."""
        workers = CronWorkers(self.registry, send=send)
        workers.start()
        try:
            self.start_tour(f"/odoo/crm.lead/{self.lead.id}", tour, login="wa_salesman")
        finally:
            workers.stop()
        self.assertFalse(workers.errors)

    def test_agent_reads_answers_and_sees_it_delivered(self):
        status, body = self.simulator.post_webhook(
            self.base_url() + self.WEBHOOK,
            self._inbound(wa_id="34600000401", body="¿Puedo visitar el piso mañana?"), SIM_ACCOUNT["app_secret"])
        self.assertEqual(status, 200, body)
        self.env["strato.whatsapp.webhook.event"]._cron_process()
        inbound = self.lead.whatsapp_message_ids
        self.assertEqual(inbound.body, "¿Puedo visitar el piso mañana?")

        self._tour_on_the_lead("strato_whatsapp_chat_tour", send=True)

        answer = self.lead.whatsapp_message_ids.filtered(lambda message: message.direction == "outbound")
        self.assertEqual(answer.body, "Claro, ¿le viene bien a las 11:00?")
        self.assertEqual(answer.author_id, self.salesman)
        self.assertIn(answer.state, ("delivered", "read"))
        self.assertTrue(inbound.is_read, "opening the chat marked the contact's message read")
        sent = self.simulator.sent()["messages"]
        self.assertEqual([message["payload"]["text"]["body"] for message in sent], [answer.body])

    def test_inbox_lists_conversations_and_opens_their_chat(self):
        self._receive(self._inbound(wa_id="34600000401", profile="Lucía", body="¿Tiene garaje?"))
        self.start_tour("/odoo/action-strato_whatsapp.strato_whatsapp_conversation_action",
                        "strato_whatsapp_inbox_tour", login="wa_salesman")
        self.env["strato.whatsapp.webhook.event"]._cron_process()  # the processing cron applies reads
        self.assertFalse(self.lead.whatsapp_message_ids.filtered(lambda message: not message.is_read),
                         "opening the chat from the inbox read the message")

    def test_agent_retries_then_cancels_a_message(self):
        """The demo's failed message, as plainly created messages are: Retry queues it again (built from its
        own fields at send time), and Cancel stops it before it goes out."""
        conversation = self.env["strato.whatsapp.conversation"]._for_leads(self.lead)[self.lead]
        message = self.env["strato.whatsapp.message"].create({
            "conversation_id": conversation.id, "direction": "outbound", "body": "¿Sigue disponible?",
            "state": "sent", "wamid": "wamid.retry.cancel"})
        self._receive(self._status("wamid.retry.cancel", "failed", recipient="34600000401", errors=[131026]))
        self.assertEqual(message.state, "failed")
        self.assertNotIn("131026", message.with_user(self.salesman).error_message)
        sent_before = len(self.simulator.sent()["messages"])
        self._tour_on_the_lead("strato_whatsapp_retry_cancel_tour", send=False)  # the page's bus only
        self.assertEqual(message.state, "cancelled")
        self.assertEqual(len(self.simulator.sent()["messages"]), sent_before, "nothing went to Meta")
