import hmac
import logging

from odoo import http
from odoo.http import request

from ..models.strato_whatsapp_account import WEBHOOK_ROUTE
from ..tools import webhook

_logger = logging.getLogger(__name__)

# Meta's webhook bodies are a few KB; batches of a few hundred messages stay far below this.
MAX_BODY_BYTES = 3 * 1024 * 1024


def _plain(status, text=""):
    return request.make_response(text, status=status, headers=[("Content-Type", "text/plain; charset=utf-8")])


class WhatsappWebhookController(http.Controller):

    @http.route(WEBHOOK_ROUTE, type="http", auth="public", methods=["GET", "POST"], csrf=False,
                save_session=False)
    def whatsapp_webhook(self, **params):
        if request.httprequest.method == "GET":
            return self._verify_subscription(params)
        return self._receive()

    def _verify_subscription(self, params):
        """Meta's subscription handshake: echo the challenge when the verify token is one of ours."""
        token = params.get("hub.verify_token") or ""
        challenge = params.get("hub.challenge")
        # sudo: public handshake route; the verify token is compared in constant time, nothing is returned.
        Account = request.env["strato.whatsapp.account"].sudo()
        if params.get("hub.mode") == "subscribe" and challenge is not None and token:
            if any(hmac.compare_digest(token.encode(), known.encode()) for known in Account._active_verify_tokens()):
                return _plain(200, challenge)
        _logger.warning("WhatsApp webhook verification refused (mode %r)", params.get("hub.mode"))
        return _plain(403, "Forbidden")

    def _receive(self):
        """Authenticate the POST and store it; processing happens in a cron, so Meta gets its answer fast."""
        length = request.httprequest.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return _plain(413, "Payload Too Large")
        raw_body = request.httprequest.get_data(cache=False)
        if len(raw_body) > MAX_BODY_BYTES:
            return _plain(413, "Payload Too Large")
        try:
            payload = webhook.parse_body(raw_body)
        except webhook.WebhookPayloadError as error:
            _logger.warning("WhatsApp webhook refused a malformed body: %s", error)
            return _plain(400, str(error))
        # sudo: public route; only routing data is read before the signature check, which gates any write.
        Account = request.env["strato.whatsapp.account"].sudo()
        # Nothing is authenticated yet: routing looks at the first few distinct ids only, and the log
        # line says how many and shows a few, so neither grows with what a stranger posts.
        phone_number_ids, waba_ids = webhook.phone_number_ids(payload), webhook.waba_ids(payload)
        candidates = Account._webhook_candidates(tuple(phone_number_ids), tuple(waba_ids),
                                                 limit=webhook.MAX_ROUTING_IDS)
        if not candidates:
            _logger.warning("WhatsApp webhook for unknown phone number ids %s / WABA ids %s: nothing stored",
                            webhook.ids_for_log(phone_number_ids), webhook.ids_for_log(waba_ids))
            return _plain(403, "Forbidden")
        signature = request.httprequest.headers.get("X-Hub-Signature-256")
        account_id = next((account_id for account_id, secret in candidates
                           if webhook.signature_is_valid(raw_body, signature, secret)), None)
        if account_id is None:
            _logger.warning("WhatsApp webhook with a missing or wrong signature refused")
            return _plain(403, "Forbidden")
        # Nothing was written so far (authentication and routing only read): ending that transaction lets
        # the event be stored in a fresh one, which the wake-up protocol needs (see _store).
        request.env.cr.commit()
        # sudo: the body's signature was checked above with the account's app secret.
        if not request.env["strato.whatsapp.webhook.event"].sudo()._store(Account.browse(account_id), raw_body):
            return _plain(403, "Forbidden")
        return _plain(200, "OK")
