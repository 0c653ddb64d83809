import copy
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import WhatsappHttpCase, payloads

MESSAGE_KINDS = ["text", "image", "audio", "document", "location", "contacts", "interactive", "button",
                 "reaction", "order", "system", "unsupported", "sticker", "video"]
# Values JSON can carry: NaN and Infinity are not JSON, and a body holding them is refused (400).
JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=30), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def _paths(node, prefix=()):
    """Every path into a JSON document."""
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, prefix + (index,))


def _mutate(document, path, action, junk):
    if not path:
        return junk if action == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "drop":
        del parent[last]
    else:
        parent[last] = junk
    return document


@tagged("post_install", "-at_install")
class TestWebhookFuzz(WhatsappHttpCase):
    """Whatever Meta (or anyone holding the secret) sends: no 5xx, and no valid message lost."""

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(MESSAGE_KINDS), data=st.data(), action=st.sampled_from(["drop", "replace"]),
           junk=JUNK)
    @mute_logger("odoo.addons.strato_whatsapp.controllers.main",
                 "odoo.addons.strato_whatsapp.models.strato_whatsapp_webhook_event")
    def test_mutated_payloads_never_5xx_and_keep_the_valid_message(self, kind, data, action, junk):
        valid = payloads.message_item("34600000090", body="mensaje válido")
        victim = payloads.message_item("34600000091", msg_type=kind, body="víctima")
        value = payloads.messages_value(self.account.phone_number_id, "34600000900",
                                        contacts=[payloads.contact_item("34600000090", "Válido")],
                                        messages=[valid, copy.deepcopy(victim)])
        document = payloads.envelope(self.account.business_account_id, [payloads.change(value)])
        victim_paths = [path for path in _paths(document)
                        if path[:7] == ("entry", 0, "changes", 0, "value", "messages", 1)]
        path = data.draw(st.sampled_from(victim_paths))
        document = _mutate(document, path, action, junk)

        response = self._post(raw=json.dumps(document).encode())
        self.assertLess(response.status_code, 500)
        self.assertEqual(response.status_code, 200, "an authenticated envelope is always accepted")
        self.env["strato.whatsapp.webhook.event"]._cron_process()
        self.assertFalse(self.env["strato.whatsapp.webhook.event"].search([("state", "=", "failed")]),
                         "processing never breaks on bad items")
        self.assertEqual(self.env["strato.whatsapp.message"].search_count([("wamid", "=", valid["id"])]), 1)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                          st.recursive(JUNK, lambda children: st.lists(children, max_size=3) |
                                       st.dictionaries(st.text(max_size=8), children, max_size=3),
                                       max_leaves=10).map(lambda doc: json.dumps(doc).encode())))
    @mute_logger("odoo.addons.strato_whatsapp.controllers.main")
    def test_arbitrary_bodies_get_a_4xx_and_store_nothing(self, body):
        response = self._post(raw=body)
        self.assertTrue(400 <= response.status_code < 500, response.status_code)
        self.assertFalse(self.env["strato.whatsapp.webhook.event"].search([]))
