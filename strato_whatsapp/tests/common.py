import hashlib
import hmac
import json
import sys
from pathlib import Path

from odoo.tests import common, new_test_user

DEVTOOLS = Path(__file__).resolve().parents[2] / "devtools"

# Distinct from the demo account, which tests may run beside.
SIM_ACCOUNT = {
    "phone_number_id": "109000000000001",
    "waba_id": "209000000000001",
    "access_token": "test-token",
    "app_secret": "test-app-secret",
    "display_phone_number": "+34 600 000 900",
    "verified_name": "Strato Inmobiliaria Test",
    "app_id": "309000000000001",
}


if str(DEVTOOLS) not in sys.path:
    sys.path.insert(0, str(DEVTOOLS))
from graph_simulator import payloads  # noqa: E402 - dev tooling beside the addon, not a runtime dependency


def sign(body, secret):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def start_graph_simulator(test_class, accounts=(SIM_ACCOUNT,), **options):
    """Start the Graph API simulator (real HTTP on loopback) for a test class; stopped after it."""
    from graph_simulator import GraphSimulator

    simulator = GraphSimulator(host="127.0.0.1", port=0, accounts=list(accounts), **options)
    simulator.start()
    test_class.addClassCleanup(simulator.stop)
    return simulator


class WhatsappFixtures:
    """An account, a Spanish company context and users of each WhatsApp role."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env.registry.clear_cache()  # account lookups are cached per registry; start clean
        cls.company = cls.env.company
        cls.company.country_id = cls.env.ref("base.es")
        cls.account = cls.env["strato.whatsapp.account"].create({
            "name": "Ventas",
            "sequence": 1,  # the company's default account, before the demo one
            "phone_number_id": SIM_ACCOUNT["phone_number_id"],
            "business_account_id": SIM_ACCOUNT["waba_id"],
            "app_id": SIM_ACCOUNT["app_id"],
            "access_token": SIM_ACCOUNT["access_token"],
            "app_secret": SIM_ACCOUNT["app_secret"],
            "graph_api_url": "http://127.0.0.1:9",  # nothing listens: tests that talk to Meta start the simulator
        })
        cls.salesman = new_test_user(
            cls.env, login="wa_salesman", groups="strato_whatsapp.group_whatsapp_user", name="Ana Vendedora")
        cls.other_salesman = new_test_user(
            cls.env, login="wa_other", groups="strato_whatsapp.group_whatsapp_user", name="Otro Vendedor")
        cls.sales_manager = new_test_user(
            cls.env, login="wa_manager", name="Jefa de Ventas",
            groups="strato_whatsapp.group_whatsapp_user,sales_team.group_sale_salesman_all_leads")
        cls.wa_admin = new_test_user(
            cls.env, login="wa_admin", groups="strato_whatsapp.group_whatsapp_admin", name="Admin WhatsApp")
        cls.plain_salesman = new_test_user(
            cls.env, login="plain_salesman", groups="sales_team.group_sale_salesman", name="Sin WhatsApp")

    @classmethod
    def _lead(cls, **vals):
        vals.setdefault("name", "Lead")
        return cls.env["crm.lead"].create(vals)

    @classmethod
    def _conversation(cls, lead, wa_id, account=None, **vals):
        return cls.env["strato.whatsapp.conversation"].create({
            "account_id": (account or cls.account).id,
            "lead_id": lead.id if lead else False,
            "wa_id": wa_id,
            **vals,
        })

    @classmethod
    def _message(cls, conversation, body="Hola", direction="inbound", **vals):
        return cls.env["strato.whatsapp.message"].create({
            "conversation_id": conversation.id,
            "direction": direction,
            "body": body,
            "state": "received" if direction == "inbound" else "queued",
            **vals,
        })


class WithGraphSimulator:
    """Mixin (before the case class): the account talks to a Graph API simulator started for the class,
    with its recorded requests and faults reset before each test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.simulator = start_graph_simulator(cls)
        cls.account.graph_api_url = cls.simulator.url

    def setUp(self):
        super().setUp()
        self.simulator.reset()


class WhatsappCase(WhatsappFixtures, common.TransactionCase):
    pass


class WhatsappHttpCase(WhatsappFixtures, common.HttpCase):
    """Posts to the webhook as Meta does, signed with the account's app secret."""

    WEBHOOK = "/api/webhooks/whatsapp"

    def _post(self, payload=None, raw=None, secret=None, signature=None, headers=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json"}
        if signature is None:
            signature = sign(body, secret or SIM_ACCOUNT["app_secret"])
        if signature:
            all_headers["X-Hub-Signature-256"] = signature
        all_headers.update(headers or {})
        return self.url_open(self.WEBHOOK, data=body, headers=all_headers)

    def _receive(self, payload):
        """Post a signed payload and process it as the cron would; returns the new messages."""
        Message = self.env["strato.whatsapp.message"]
        before = Message.search([]).ids
        response = self._post(payload)
        self.assertEqual(response.status_code, 200, response.text)
        self.env["strato.whatsapp.webhook.event"]._cron_process()
        return Message.search([("id", "not in", before)], order="id")

    @staticmethod
    def _inbound(wa_id="34600000001", profile="Lucía", msg_type="text", body="Hola, me interesa el piso", **fields):
        return payloads.inbound_message(SIM_ACCOUNT["phone_number_id"], SIM_ACCOUNT["display_phone_number"],
                                        wa_id, profile, msg_type=msg_type, body=body,
                                        waba_id=SIM_ACCOUNT["waba_id"], **fields)

    @staticmethod
    def _status(wamid, status, recipient="34600000001", **fields):
        return payloads.status_update(SIM_ACCOUNT["phone_number_id"], wamid, status, recipient,
                                      waba_id=SIM_ACCOUNT["waba_id"], **fields)
