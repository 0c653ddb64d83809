"""The webhook as an attacker, or a broken client holding the app secret, would use it."""
import json
from datetime import datetime, timedelta
from unittest.mock import patch

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import SIM_ACCOUNT, WhatsappHttpCase, WithGraphSimulator, payloads

CONTROLLER_LOGGER = "odoo.addons.strato_whatsapp.controllers.main"
EVENT_LOGGER = "odoo.addons.strato_whatsapp.models.strato_whatsapp_webhook_event"
MAX_BODY_BYTES = 3 * 1024 * 1024


@tagged("post_install", "-at_install")
class TestUnauthenticatedFlood(WhatsappHttpCase):
    """An unsigned POST costs us little, whatever ids it names."""

    def _flood_body(self, phone_number_ids, waba_ids):
        """As many distinct ids as fit the size limit (100k phone number ids would not), of numbers and
        of WABAs, all unknown: the most routing work one unsigned POST could ask for."""
        changes = [{"value": {"metadata": {"phone_number_id": n}}} for n in range(1, phone_number_ids + 1)]
        entries = [{"id": 100_000 + n} for n in range(waba_ids)]
        entries[0]["changes"] = changes
        body = json.dumps({"object": "whatsapp_business_account", "entry": entries}, separators=(",", ":")).encode()
        self.assertLess(len(body), MAX_BODY_BYTES, "the flood must pass the size check to reach routing")
        return body

    def test_unsigned_post_naming_100k_ids_is_refused_after_little_work_and_a_short_log(self):
        body = self._flood_body(phone_number_ids=45_000, waba_ids=55_000)  # 100k distinct ids
        Account = type(self.env["strato.whatsapp.account"])
        route = Account._webhook_candidates
        routed = []

        def counting_route(records, phone_number_ids, waba_ids, *args, **kwargs):
            routed.append((len(phone_number_ids), len(waba_ids)))
            return route(records, phone_number_ids, waba_ids, *args, **kwargs)

        with patch.object(Account, "_webhook_candidates", counting_route), \
                self.assertLogs(CONTROLLER_LOGGER, "WARNING") as logs:
            response = self._post(raw=body, signature="")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(len(routed), 1)
        self.assertLessEqual(max(routed[0]), 64, "only the first distinct ids of an unauthenticated body are looked up")
        self.assertTrue(logs.output)
        for line in logs.output:
            self.assertLess(len(line), 400, line[:400])
        self.assertFalse(self.env["strato.whatsapp.webhook.event"].search([]))


@tagged("post_install", "-at_install")
class TestPoisonedItems(WhatsappHttpCase):
    """One hostile value in a signed POST costs that item at most, never the other customers' messages."""

    CUSTOMERS = ("34600000111", "34600000112", "34600000113")

    def _post_three(self, spoil):
        """One signed POST with a message from each customer; ``spoil`` edits the middle one (its item
        and its contact card)."""
        items = [payloads.message_item(wa_id, body=f"Mensaje de {wa_id}") for wa_id in self.CUSTOMERS]
        cards = [payloads.contact_item(wa_id, f"Cliente {wa_id[-3:]}") for wa_id in self.CUSTOMERS]
        spoil(items[1], cards[1])
        value = payloads.messages_value(SIM_ACCOUNT["phone_number_id"], SIM_ACCOUNT["display_phone_number"],
                                        contacts=cards, messages=items)
        document = payloads.envelope(SIM_ACCOUNT["waba_id"], [payloads.change(value)])
        received = fields.Datetime.now()
        response = self._post(raw=json.dumps(document).encode())  # escapes \u0000 and \ud800 as Meta's JSON would
        self.assertEqual(response.status_code, 200, response.text)
        self.env["strato.whatsapp.webhook.event"]._cron_process()
        return items, received

    def _by_wamid(self, wamid):
        return self.env["strato.whatsapp.message"].search([("wamid", "=", wamid)])

    def _assert_neighbours_landed(self, items):
        for item in (items[0], items[2]):
            message = self._by_wamid(item["id"])
            self.assertEqual(len(message), 1, f"the message of {item['from']} is lost")
            self.assertEqual(message.body, f"Mensaje de {item['from']}")
            self.assertEqual(message.lead_id.whatsapp_number, "+" + item["from"])
            self.assertIn(f"Mensaje de {item['from']}", message.mail_message_id.body or "",
                          "the message is in its lead's chatter")

    def _event(self):
        return self.env["strato.whatsapp.webhook.event"].search([])

    def test_nul_and_lone_surrogates_are_stored_sanitised(self):
        def spoil(item, card):
            item["text"]["body"] = "Hola\u0000 piso \ud800 centro"
            card["profile"]["name"] = "Lu\u0000cía \udfff"

        items, _received = self._post_three(spoil)
        self._assert_neighbours_landed(items)
        message = self._by_wamid(items[1]["id"])
        self.assertEqual(message.body, "Hola piso \ufffd centro")
        self.assertEqual(message.conversation_id.profile_name, "Lucía \ufffd")
        self.assertEqual(self._event().state, "done")

    def test_nul_in_ids_and_file_names_is_stored_sanitised(self):
        def spoil(item, card):
            item["id"] += "\u0000"
            item["type"] = "document"
            del item["text"]
            item["document"] = {"id": "77\u00001", "mime_type": "application/pdf\u0000", "filename": "f\u0000.pdf",
                                "sha256": "x\ud800"}

        items, _received = self._post_three(spoil)
        self._assert_neighbours_landed(items)
        message = self._by_wamid(items[1]["id"].replace("\u0000", ""))
        self.assertRecordValues(message, [{"message_type": "document", "media_id": "771",
                                           "media_filename": "f.pdf", "media_mime_type": "application/pdf"}])

    def test_far_future_timestamp_becomes_the_time_received(self):
        def spoil(item, card):
            item["timestamp"] = "253402300799"  # 9999-12-31 23:59:59: one day more overflows

        items, received = self._post_three(spoil)
        self._assert_neighbours_landed(items)
        message = self._by_wamid(items[1]["id"])
        self.assertEqual(len(message), 1)
        self.assertLessEqual(message.message_at, fields.Datetime.now())
        self.assertGreaterEqual(message.message_at, received - timedelta(seconds=5))
        conversation = message.conversation_id
        self.assertTrue(conversation.window_open)
        self.assertLess(conversation.window_expires_at, datetime(9999, 1, 1))

    @mute_logger(EVENT_LOGGER)
    def test_unrepresentable_numbers_cost_one_item_with_a_visible_reason(self):
        def spoil(item, card):
            item["timestamp"] = 10 ** 30

        items, _received = self._post_three(spoil)
        self._assert_neighbours_landed(items)
        event = self._event()
        self.assertFalse(self._by_wamid(items[1]["id"]))
        self.assertEqual(event.state, "done", "the rest of the POST was applied")
        self.assertIn("timestamp", event.error or "", "the skipped message is named on the event")

    def test_out_of_range_coordinates_keep_the_message_without_a_map(self):
        def spoil(item, card):
            item["type"] = "location"
            del item["text"]
            item["location"] = {"latitude": 10 ** 30, "longitude": -(10 ** 30), "name": "Piso\u0000 centro"}

        items, _received = self._post_three(spoil)
        self._assert_neighbours_landed(items)
        message = self._by_wamid(items[1]["id"])
        self.assertRecordValues(message, [{"message_type": "location", "latitude": 0.0, "longitude": 0.0}])

    def test_huge_error_codes_and_nul_in_errors_are_clamped(self):
        def spoil(item, card):
            item["type"] = "unsupported"
            del item["text"]
            item["errors"] = [{"code": 10 ** 30, "title": "Unsupported\u0000"}]

        items, _received = self._post_three(spoil)
        self._assert_neighbours_landed(items)
        message = self._by_wamid(items[1]["id"])
        self.assertEqual(message.message_type, "unsupported")
        self.assertIn("Unsupported", message.body)

    @mute_logger(EVENT_LOGGER)
    def test_a_status_with_a_huge_error_code_fails_alone(self):
        sent = [self._message(self._conversation(self._lead(name=f"Lead {n}"), wa_id), direction="outbound",
                              state="sent", wamid=f"wamid.hardening.out{n}")
                for n, wa_id in enumerate(self.CUSTOMERS)]
        statuses = [payloads.status_item(message.wamid, "delivered", wa_id)
                    for message, wa_id in zip(sent, self.CUSTOMERS)]
        statuses[1] = payloads.status_item(sent[1].wamid, "failed", self.CUSTOMERS[1],
                                           errors=[{"code": 10 ** 30, "title": "Boom"}])
        statuses[1]["timestamp"] = "253402300799"
        value = payloads.messages_value(SIM_ACCOUNT["phone_number_id"], SIM_ACCOUNT["display_phone_number"],
                                        statuses=statuses)
        response = self._post(payloads.envelope(SIM_ACCOUNT["waba_id"], [payloads.change(value)]))
        self.assertEqual(response.status_code, 200)
        self.env["strato.whatsapp.webhook.event"]._cron_process()
        self.assertEqual([message.state for message in sent], ["delivered", "failed", "delivered"])
        self.assertEqual(sent[1].error_code, 0, "a code that fits no integer column is not kept")
        self.assertLessEqual(sent[1].failed_at, fields.Datetime.now())

    @mute_logger(EVENT_LOGGER)
    def test_an_item_that_still_breaks_fails_alone_and_is_named_on_the_event(self):
        """Whatever slips through sanitising: the other messages of the POST are kept, the event says why."""
        Message = type(self.env["strato.whatsapp.message"])
        receive = Message._receive
        poisoned = "Mensaje de 34600000112"

        def breaking_receive(records, account, events):
            if any(event.text == poisoned for event in events):
                raise ValueError("poisoned message")
            return receive(records, account, events)

        with patch.object(Message, "_receive", breaking_receive):
            items, _received = self._post_three(lambda item, card: None)
        self._assert_neighbours_landed(items)
        self.assertFalse(self._by_wamid(items[1]["id"]))
        event = self._event()
        self.assertEqual(event.state, "failed", "kept to retry")
        self.assertIn(items[1]["id"], event.error)
        self.assertIn("poisoned message", event.error)
        event.action_replay()  # the fault is gone: the missing message is applied, the others kept once
        self.assertEqual(event.state, "done")
        self.assertEqual(len(self._by_wamid(items[1]["id"])), 1)
        self.assertEqual(len(self._by_wamid(items[0]["id"])), 1)


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.cookie)">'
       b'<script>fetch("/web/session/get_session_info")</script></svg>')
HTML = (b'<html><head><meta http-equiv="refresh" content="0;url=https://login.example.net/odoo"></head>'
        b'<body>Session expired, please log in again</body></html>')
XML = b'<?xml version="1.0"?><x:html xmlns:x="http://www.w3.org/1999/xhtml"><x:script>alert(1)</x:script></x:html>'


@tagged("post_install", "-at_install")
class TestInboundActiveContent(WithGraphSimulator, WhatsappHttpCase):
    """Media a contact sends is served to agents as inert data, never as a page of our origin."""

    def _received_attachment(self, wa_id, msg_type, content, mime_type, filename=None):
        media_id = self.simulator.add_media(content, mime_type, filename)
        fields_ = {"filename": filename} if filename else {}
        message = self._receive(self._inbound(wa_id=wa_id, msg_type=msg_type, media_id=media_id,
                                              mime_type=mime_type, **fields_))
        self.env["strato.whatsapp.message"]._cron_fetch_media()
        self.assertEqual(message.media_state, "done")
        return message.attachment_ids

    def _as_agent(self, attachment):
        self.authenticate(self.sales_manager.login, self.sales_manager.login)
        response = self.url_open(f"/web/content/{attachment.id}")
        self.assertEqual(response.status_code, 200)
        return response

    def test_html_svg_and_xml_media_are_stored_and_served_as_plain_text(self):
        cases = [
            ("34600000130", "document", HTML, "text/html", "aviso.html"),
            ("34600000131", "image", SVG, "image/svg+xml", None),
            ("34600000132", "document", SVG, "IMAGE/SVG+XML; charset=utf-8", "plano.svg"),
            ("34600000133", "document", XML, "application/xhtml+xml", "ficha.xhtml"),
            ("34600000134", "document", XML, "application/xml", "ficha.xml"),
        ]
        for wa_id, msg_type, content, mime_type, filename in cases:
            with self.subTest(mime_type=mime_type):
                attachment = self._received_attachment(wa_id, msg_type, content, mime_type, filename)
                self.assertEqual(attachment.mimetype, "text/plain")
                self.assertEqual(attachment.raw, content, "the file itself is kept")
                served = self._as_agent(attachment).headers["Content-Type"]
                self.assertTrue(served.startswith("text/plain"), served)

    def test_ordinary_media_keep_their_type(self):
        attachment = self._received_attachment("34600000135", "document", b"%PDF-1.4\n" + b"0" * 64,
                                               "application/pdf", "ficha.pdf")
        self.assertEqual(attachment.mimetype, "application/pdf")
        self.assertEqual(self._as_agent(attachment).headers["Content-Type"], "application/pdf")
