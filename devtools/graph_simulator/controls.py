"""The /_sim control routes and the operations behind them (shared with GraphSimulator's helpers)."""
import asyncio
import base64

from .graph import is_mime_type
from .webhooks import WebhookError
from .wire import json_response

WEBHOOK_EXCERPT_CHARS = 2000


class Controls:
    """Test-side operations on the simulator state. Run them on the event loop thread only."""

    def __init__(self, state, poster):
        self.state = state
        self.poster = poster

    def reset(self, templates=False, media=False):
        self.state.reset(templates=templates, media=media)

    def requests(self, path_contains=None):
        return self.state.requests(path_contains)

    def sent(self):
        return self.state.sent()

    def stats(self):
        return self.state.stats()

    def set_faults(self, rules, seed=None):
        if not isinstance(rules, list):
            raise ValueError("rules must be a list")
        self.state.faults.replace(rules, seed)

    def seed_templates(self, templates, waba_id=None):
        if not isinstance(templates, list):
            raise ValueError("templates must be a list")
        return self.state.templates.seed(str(waba_id or self.state.accounts[0]["waba_id"]), templates)

    def clear_templates(self):
        self.state.templates.clear()

    def list_seeded_templates(self):
        return {waba_id: list(templates) for waba_id, templates in self.state.templates.by_waba.items()}

    def set_template_status(self, template_id, status, reason=None):
        if template_id not in self.state.templates.by_id:
            raise ValueError(f"unknown template id {template_id}")
        return self.state.templates.set_status(template_id, status, reason)

    def add_media(self, content, mime_type, filename=None):
        if not isinstance(content, (bytes, bytearray)) or not is_mime_type(mime_type):
            raise ValueError("media needs bytes content and a MIME type such as image/jpeg")
        return self.state.add_media(bytes(content), mime_type, filename)

    async def post_webhook(self, target_url, payload, app_secret=None, bad_signature=False, sign=True):
        """Post a webhook as Meta would; (target's status, body excerpt), status 0 if unreachable."""
        secret = app_secret or self._app_secret_for(payload)
        try:
            status, body = await self.poster.deliver(target_url, payload, secret, sign, bad_signature)
        except (OSError, EOFError, TimeoutError, ValueError, WebhookError, asyncio.LimitOverrunError) as err:
            self.state.counters["webhooks_failed"] += 1
            return 0, f"{type(err).__name__}: {err}"
        counter = "webhooks_posted" if status == 200 else "webhooks_failed"
        self.state.counters[counter] += 1
        return status, body

    def _app_secret_for(self, payload):
        """The secret of the account the payload is about, as Meta signs with that app's secret."""
        try:
            entry = payload["entry"][0]
            phone_number_id = entry["changes"][0]["value"].get("metadata", {}).get("phone_number_id")
            account = self.state.phones.get(phone_number_id) or self.state.account_for_waba(entry["id"])
        except (KeyError, IndexError, TypeError, AttributeError):
            account = self.state.accounts[0]
        return account["app_secret"]


# --------------------------------------------------------------------------------------------
# HTTP routes: /_sim/<name>
# --------------------------------------------------------------------------------------------
def route_control(controls, request, name):
    """A Response, or a coroutine producing one (the webhook route waits on the target)."""
    handler = _ROUTES.get((request.method, name))
    if handler is None:
        return json_response({"error": {"message": f"no control route {request.method} /_sim/{name}"}}, 404)
    body = request.json if isinstance(request.json, dict) else {}
    if request.json_error:
        raise ValueError("the body is not valid JSON")
    return handler(controls, request, body)


def _reset(controls, _request, body):
    controls.reset(templates=bool(body.get("templates")), media=bool(body.get("media")))
    return json_response({"success": True})


def _requests(controls, request, _body):
    return json_response({"requests": controls.requests(request.query.get("path_contains"))})


def _sent(controls, _request, _body):
    return json_response(controls.sent())


def _stats(controls, _request, _body):
    return json_response(controls.stats())


def _set_faults(controls, _request, body):
    controls.set_faults(body.get("rules", []), body.get("seed"))
    return json_response({"success": True, "rules": len(body.get("rules", []))})


def _get_faults(controls, _request, _body):
    return json_response({"rules": controls.state.faults.describe()})


def _seed_templates(controls, _request, body):
    return json_response({"ids": controls.seed_templates(body.get("templates"), body.get("waba_id"))})


def _clear_templates(controls, _request, _body):
    controls.clear_templates()
    return json_response({"success": True})


def _list_templates(controls, _request, _body):
    return json_response({"templates": controls.list_seeded_templates()})


def _template_status(controls, _request, body):
    template = controls.set_template_status(str(body.get("id")), body.get("status"), body.get("reason"))
    return json_response(template)


def _add_media(controls, _request, body):
    content = base64.b64decode(body.get("content_b64", ""), validate=True)
    return json_response({"id": controls.add_media(content, body.get("mime_type"), body.get("filename"))})


async def _post_webhook(controls, _request, body):
    if not body.get("target_url") or "payload" not in body:
        raise ValueError("target_url and payload are required")
    status, text = await controls.post_webhook(
        body["target_url"], body["payload"], body.get("app_secret"),
        bool(body.get("bad_signature")), body.get("sign", True))
    return json_response({"status": status, "body": text[:WEBHOOK_EXCERPT_CHARS]})


def _health(_controls, _request, _body):
    return json_response({"ok": True})


_ROUTES = {
    ("POST", "reset"): _reset,
    ("GET", "requests"): _requests,
    ("GET", "sent"): _sent,
    ("GET", "stats"): _stats,
    ("POST", "faults"): _set_faults,
    ("GET", "faults"): _get_faults,
    ("POST", "templates"): _seed_templates,
    ("DELETE", "templates"): _clear_templates,
    ("GET", "templates"): _list_templates,
    ("POST", "templates/status"): _template_status,
    ("POST", "media"): _add_media,
    ("POST", "webhook"): _post_webhook,
    ("GET", "health"): _health,
}
