"""Client for the /_sim control routes of a simulator running in another process.

Same method names as GraphSimulator's helpers. Standard library only, so benchmark and demo
scripts can use it from any interpreter.
"""
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

# Loopback traffic must never go through an HTTP proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ControlError(Exception):
    pass


class ControlClient:
    def __init__(self, base_url, timeout=30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def wait_ready(self, timeout=10.0):
        """Poll /_sim/health until the simulator answers (after starting it as a process)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._call("GET", "health")
            except (OSError, ControlError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def requests(self, path_contains=None):
        query = {"path_contains": path_contains} if path_contains else None
        return self._call("GET", "requests", query=query)["requests"]

    def sent(self):
        return self._call("GET", "sent")

    def stats(self):
        return self._call("GET", "stats")

    def set_faults(self, rules, seed=None):
        self._call("POST", "faults", {"rules": list(rules), "seed": seed})

    def reset(self, templates=False, media=False):
        self._call("POST", "reset", {"templates": templates, "media": media})

    def add_media(self, content, mime_type, filename=None):
        body = {"content_b64": base64.b64encode(content).decode(), "mime_type": mime_type, "filename": filename}
        return self._call("POST", "media", body)["id"]

    def seed_templates(self, templates, waba_id=None):
        return self._call("POST", "templates", {"templates": list(templates), "waba_id": waba_id})["ids"]

    def clear_templates(self):
        self._call("DELETE", "templates")

    def set_template_status(self, template_id, status, reason=None):
        return self._call("POST", "templates/status", {"id": str(template_id), "status": status, "reason": reason})

    def post_webhook(self, target_url, payload, app_secret=None, bad_signature=False, sign=True):
        body = {"target_url": target_url, "payload": payload, "app_secret": app_secret,
                "bad_signature": bad_signature, "sign": sign}
        answer = self._call("POST", "webhook", body)
        return answer["status"], answer["body"]

    def _call(self, method, route, body=None, query=None):
        url = f"{self.base_url}/_sim/{route}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise ControlError(f"{method} /_sim/{route}: {err.code} {err.read()[:500]!r}") from None
