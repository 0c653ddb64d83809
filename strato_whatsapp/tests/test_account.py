from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .common import SIM_ACCOUNT, WhatsappCase, WithGraphSimulator


@tagged("post_install", "-at_install")
class TestWhatsappAccount(WhatsappCase):

    def test_verify_token_generated_when_empty(self):
        self.assertGreaterEqual(len(self.account.verify_token), 24)
        other = self.account.copy({"phone_number_id": "100000000000009"})
        self.assertTrue(other.verify_token)
        self.assertNotEqual(other.verify_token, self.account.verify_token)
        self.assertFalse(other.access_token, "credentials are not copied")
        self.account.verify_token = ""
        self.assertTrue(self.account.verify_token)

    def test_webhook_url_follows_base_url(self):
        self.env["ir.config_parameter"].sudo().set_param("web.base.url", "https://crm.example.com/")
        self.account.invalidate_recordset(["webhook_url"])
        self.assertEqual(self.account.webhook_url, "https://crm.example.com/api/webhooks/whatsapp")

    def test_webhook_needs_app_secret(self):
        self.assertTrue(self.account.webhook_accepts_posts)
        self.account.app_secret = False
        self.assertFalse(self.account.webhook_accepts_posts)
        # Salespeople see whether it works without seeing the secret.
        self.account.app_secret = "s3cret"
        self.assertTrue(self.account.with_user(self.salesman).webhook_accepts_posts)

    def test_graph_api_defaults_and_version_check(self):
        self.assertEqual(self.env["strato.whatsapp.account"].default_get(["graph_api_url"])["graph_api_url"],
                         "https://graph.facebook.com")
        self.assertIn(self.account.graph_api_version, ("v25.0", "v26.0"))
        for expired in ("v17.0", "v19.0", "v21.0"):
            with self.assertRaisesRegex(ValidationError, "expire"):
                self.account.graph_api_version = expired
        with self.assertRaisesRegex(ValidationError, "look like"):
            self.account.graph_api_version = "latest"
        self.account.graph_api_version = "26"
        self.assertEqual(self.account.graph_api_version, "v26.0")
        with self.assertRaises(ValidationError):
            self.account.graph_api_url = "graph.facebook.com"
        with self.assertRaises(ValidationError):
            self.account.graph_api_url = "https://bsp.example.com/graph/"  # a path would redirect the calls
        self.account.graph_api_url = "https://BSP.example.com/"  # a system administrator's choice
        self.assertEqual(self.account.graph_api_url, "https://bsp.example.com")

    def test_account_from_environment_variables(self):
        environ = {
            "WHATSAPP_PHONE_NUMBER_ID": "100000000000077",
            "WHATSAPP_ACCESS_TOKEN": "env-token",
            "WHATSAPP_VERIFY_TOKEN": "env-verify",
            "WHATSAPP_BUSINESS_ACCOUNT_ID": "200000000000077",
            "WHATSAPP_APP_SECRET": "env-secret",
        }
        Account = self.env["strato.whatsapp.account"]
        account = Account._sync_from_environment(environ)
        self.assertRecordValues(account, [{
            "phone_number_id": "100000000000077", "access_token": "env-token", "verify_token": "env-verify",
            "business_account_id": "200000000000077", "app_secret": "env-secret", "company_id": self.company.id,
        }])
        environ["WHATSAPP_ACCESS_TOKEN"] = "rotated-token"
        self.assertEqual(Account._sync_from_environment(environ), account)
        self.assertEqual(account.access_token, "rotated-token")
        self.assertFalse(Account._sync_from_environment({"WHATSAPP_PHONE_NUMBER_ID": "1"}),
                         "no token, no account")


@tagged("post_install", "-at_install")
class TestWhatsappAccountConnection(WithGraphSimulator, WhatsappCase):

    def test_connection_works(self):
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "success")
        self.assertIn(SIM_ACCOUNT["verified_name"], result["params"]["message"])
        self.assertEqual(self.account.display_phone_number, SIM_ACCOUNT["display_phone_number"])
        self.assertEqual(self.account.quality_rating, "GREEN")
        self.assertIn("Quality rating: High.", result["params"]["message"], "in words, not Meta's colour code")
        self.assertEqual(result["params"]["next"], {"type": "ir.actions.client", "tag": "soft_reload"},
                         "the form shows what Meta answered without a manual reload")
        request = self.simulator.requests()[-1]
        self.assertEqual(request["path"], f"/{self.account.graph_api_version}/{SIM_ACCOUNT['phone_number_id']}")
        self.assertEqual(request["headers"]["authorization"], "Bearer test-token")

    def test_quality_ratings_meta_adds_read_as_not_rated(self):
        Account = self.env["strato.whatsapp.account"]
        self.assertEqual([Account._quality_rating(value) for value in ("yellow", "RED", "NA", None, "PURPLE")],
                         ["YELLOW", "RED", "UNKNOWN", "UNKNOWN", "UNKNOWN"])

    def test_wrong_token_is_explained_and_flagged(self):
        self.account.access_token = "EAAG-revoked-4711"
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "danger")
        self.assertIn("access token", result["params"]["message"])
        self.assertNotIn("4711", result["params"]["message"], "the token never shows in messages")
        self.assertTrue(self.account.token_invalid)
        self.account.access_token = SIM_ACCOUNT["access_token"]
        self.assertFalse(self.account.token_invalid, "a new token clears the flag")

    def test_meta_unreachable_is_explained(self):
        self.simulator.set_faults([{"kind": "http", "status": 503, "code": 131000, "message": "Service unavailable"}])
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "danger")
        self.assertIn("Try again", result["params"]["message"])


@tagged("post_install", "-at_install")
class TestWhatsappAccountNeutralize(WhatsappCase):

    def test_neutralized_database_keeps_no_credentials_and_sends_nothing(self):
        from odoo.modules.neutralize import get_neutralization_queries
        lead = self._lead(mobile="+34 600 00 04 01")
        conversation = self._conversation(lead, "34600000401", last_inbound_at=self.env.cr.now())
        message = self._message(conversation, "hola", direction="outbound", next_attempt_at=self.env.cr.now())
        self.env.flush_all()
        for query in get_neutralization_queries(["strato_whatsapp"]):
            self.env.cr.execute(query)
        self.env.invalidate_all()
        self.assertRecordValues(self.account, [{"access_token": False, "app_secret": False, "token_invalid": True}])
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(message.state, "queued", "nothing goes out from a neutralized copy")
