import json
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import SIM_ACCOUNT, WhatsappHttpCase, sign


@tagged("post_install", "-at_install")
class TestWebhookEndpoint(WhatsappHttpCase):
    """The HTTP contract Meta (and outside checks) rely on."""

    def _events(self):
        return self.env["strato.whatsapp.webhook.event"].search([])

    def test_verification_echoes_the_challenge(self):
        token = self.account.verify_token
        response = self.url_open(f"{self.WEBHOOK}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.text, "1158201444")

    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_verification_refuses_wrong_or_missing_token(self):
        for query in ("hub.mode=subscribe&hub.verify_token=nope&hub.challenge=42",
                      "hub.mode=subscribe&hub.challenge=42",
                      f"hub.mode=unsubscribe&hub.verify_token={self.account.verify_token}&hub.challenge=42",
                      ""):
            response = self.url_open(f"{self.WEBHOOK}?{query}")
            self.assertEqual(response.status_code, 403, query)
            self.assertNotIn("42", response.text)
        self.account.active = False
        response = self.url_open(f"{self.WEBHOOK}?hub.mode=subscribe&hub.verify_token={self.account.verify_token}&hub.challenge=42")
        self.assertEqual(response.status_code, 403, "an archived account does not verify")

    def test_signed_post_is_stored_and_acknowledged(self):
        response = self._post(self._inbound())
        self.assertEqual(response.status_code, 200)
        event = self._events()
        self.assertEqual(len(event), 1)
        self.assertEqual(event.account_id, self.account)
        self.assertEqual(event.state, "pending")

    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_bad_signatures_are_refused_and_store_nothing(self):
        body = json.dumps(self._inbound()).encode()
        cases = {
            "missing": self._post(raw=body, signature=""),
            "wrong secret": self._post(raw=body, secret="not-the-secret"),
            "garbage": self._post(raw=body, signature="sha256=zz"),
            "sha1 header style": self._post(raw=body, signature="sha1=" + sign(body, SIM_ACCOUNT["app_secret"])[7:]),
            "body altered": self._post(raw=body.replace(b"piso", b"pisO"), signature=sign(body, SIM_ACCOUNT["app_secret"])),
        }
        for case, response in cases.items():
            self.assertEqual(response.status_code, 403, case)
        self.assertFalse(self._events())

    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_account_without_app_secret_refuses_posts(self):
        self.account.app_secret = False
        self.assertEqual(self._post(self._inbound()).status_code, 403)
        self.assertFalse(self._events())

    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_malformed_bodies_get_a_4xx(self):
        for raw in (b"{not json", b"[]", b'{"object": "page", "entry": []}', b'{"object": "whatsapp_business_account", "entry": {}}',
                    b"\xff\xfe", b""):
            response = self._post(raw=raw)
            self.assertTrue(400 <= response.status_code < 500, (raw, response.status_code))
        self.assertFalse(self._events())

    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_oversized_body_gets_413(self):
        payload = self._inbound(body="x" * (3 * 1024 * 1024 + 10))
        self.assertEqual(self._post(payload).status_code, 413)
        self.assertFalse(self._events())

    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_unknown_phone_number_id_creates_nothing(self):
        payload = self._inbound()
        payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999999999"
        self.assertEqual(self._post(payload).status_code, 403)
        self.assertFalse(self._events())
        self.assertFalse(self.env["strato.whatsapp.message"].search([("account_id", "=", self.account.id)]))

    @mute_logger("odoo.addons.strato_whatsapp.models.strato_whatsapp_webhook_event")
    def test_an_account_deleted_after_routing_gets_403_and_stores_nothing(self):
        gone = (self.account.id + 100000, SIM_ACCOUNT["app_secret"])  # routing still knew it
        Account = type(self.env["strato.whatsapp.account"])
        with patch.object(Account, "_webhook_candidates", return_value=(gone,)):
            response = self._post(self._inbound())
        self.assertEqual(response.status_code, 403)
        self.assertFalse(self.env["strato.whatsapp.webhook.event"].search([("account_id", "=", gone[0])]))

    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_odd_input_never_gets_a_5xx(self):
        response = self.url_open(f"{self.WEBHOOK}?hub.mode=subscribe&hub.verify_token=%C3%A9%00&hub.challenge=1")
        self.assertEqual(response.status_code, 403)
        for bad_id in ("1\u0000", "\u00e9" * 3, "9" * 500):
            payload = self._inbound()
            payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = bad_id
            payload["entry"][0]["id"] = bad_id
            response = self._post(payload)
            self.assertEqual(response.status_code, 403, bad_id)
        self.assertFalse(self._events())
