"""Take the README's screenshots (lead chat, inbox, template preview) from a running demo.

    devtools/run_demo &                      # Odoo on :8069 with demo data, simulator on :8899
    /opt/odoo18-venv/bin/python devtools/screenshots.py --out docs/screenshots

The script plays a short conversation on the demo lead (Lucía: a photo, a location, a reply that the
simulator delivers, a reaction), then opens headless Chromium logged in as the given user and saves:
  lead_chat.png          the lead form with its WhatsApp chat
  inbox.png              CRM > WhatsApp > Conversations (kanban)
  template_preview.png   a template's form with its preview bubble
Needs Chromium (Debian's `chromium`) and websocket-client (requirements-test.txt).
"""
import argparse
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import websocket

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from graph_simulator import payloads  # noqa: E402
from graph_simulator.control import ControlClient  # noqa: E402

WINDOW = (1400, 1050)
LUCIA = "34600000001"


class Odoo:
    """JSON-RPC as a logged-in user (the session cookie is reused by the browser)."""

    def __init__(self, url, db, login, password):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False
        answer = self.session.post(f"{self.url}/web/session/authenticate", json={
            "jsonrpc": "2.0", "params": {"db": db, "login": login, "password": password}}, timeout=30).json()
        if answer.get("error") or not answer.get("result", {}).get("uid"):
            raise SystemExit(f"login as {login} failed: {answer.get('error')}")

    def call(self, model, method, *args, **kwargs):
        answer = self.session.post(f"{self.url}/web/dataset/call_kw/{model}/{method}", json={
            "jsonrpc": "2.0", "params": {"model": model, "method": method, "args": list(args), "kwargs": kwargs}},
            timeout=60).json()
        if answer.get("error"):
            raise SystemExit(f"{model}.{method}: {answer['error']['data']['message']}")
        return answer["result"]

    def ref(self, xmlid):
        module, name = xmlid.split(".")
        found = self.call("ir.model.data", "search_read", [("module", "=", module), ("name", "=", name)], ["res_id"])
        return found[0]["res_id"]


def flat_photo():
    """A small drawing of a flat's living room, standing in for the contact's photo."""
    from PIL import Image, ImageDraw  # noqa: PLC0415 - Pillow comes with Odoo

    image = Image.new("RGB", (480, 320), "#f3ede4")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 230, 480, 320), fill="#b08968")
    draw.rectangle((40, 40, 200, 200), fill="#a5d8ff", outline="#ffffff", width=8)
    draw.line((120, 40, 120, 200), fill="#ffffff", width=6)
    draw.rectangle((250, 160, 440, 240), fill="#6c757d")
    draw.rectangle((250, 130, 290, 240), fill="#495057")
    draw.ellipse((330, 60, 390, 120), fill="#ffd43b")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def play_conversation(odoo, simulator, webhook_url):
    """Lucía sends a photo and a location, the agent answers, Lucía reacts to the answer."""
    lead_id = odoo.ref("strato_whatsapp.demo_lead_lucia")
    account_id = odoo.ref("strato_whatsapp.demo_account")
    odoo.call("strato.whatsapp.account", "write", [account_id], {"graph_api_url": simulator.base_url})
    say = lambda msg_type, body="", **fields: simulator.post_webhook(webhook_url, payloads.inbound_message(  # noqa: E731
        payloads.DEFAULT_PHONE_NUMBER_ID, payloads.DEFAULT_DISPLAY_PHONE_NUMBER, LUCIA, "Lucía",
        msg_type=msg_type, body=body, **fields))
    say("image", media_id=simulator.add_media(flat_photo(), "image/jpeg"), mime_type="image/jpeg",
        caption="Así se ve el salón desde la ventana 😊")
    say("location", latitude=40.4362, longitude=-3.7038, name="Metro Iglesia", address="Calle de Santa Engracia, Madrid")
    say("text", body="¿Podríamos quedar allí el jueves?")
    wait_for(lambda: len(odoo.call("crm.lead", "whatsapp_chat_load", [lead_id])["messages"]) >= 6, "the messages")
    sent = odoo.call("crm.lead", "whatsapp_chat_send", [lead_id],
                     body="¡Claro! Nos vemos el jueves a las 18:00 en la salida del metro. Te llevo las llaves.")
    reply_id = sent["messages"][0]["id"]
    wait_for(lambda: message_state(odoo, lead_id, reply_id) in ("delivered", "read"), "the reply to be delivered")
    wamid = odoo.call("strato.whatsapp.message", "read", [reply_id], ["wamid"])[0]["wamid"]
    say("reaction", message_id=wamid, emoji="👍")
    return lead_id


def new_contact_writes(odoo, simulator, webhook_url):
    """A new customer writes: a new lead, and an unread conversation in the inbox."""
    simulator.post_webhook(webhook_url, payloads.inbound_message(
        payloads.DEFAULT_PHONE_NUMBER_ID, payloads.DEFAULT_DISPLAY_PHONE_NUMBER, "34611222333", "Pedro Sánchez",
        body="Buenas tardes, busco un piso de 3 habitaciones en Madrid, ¿tienen algo por Arganzuela?"))
    wait_for(lambda: odoo.call("strato.whatsapp.conversation", "search_count", [("unread_count", ">", 0)]),
             "the new contact's conversation")


def message_state(odoo, lead_id, message_id):
    messages = odoo.call("crm.lead", "whatsapp_chat_fetch", [lead_id], [message_id])["messages"]
    return messages[0]["state"] if messages else None


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what} (are the crons running?)")
        time.sleep(0.5)


class Browser:
    """Headless Chromium driven over the DevTools protocol."""

    def __init__(self, cookie, url, timezone):
        binary = next((shutil.which(name) for name in ("chromium", "google-chrome", "chromium-browser")
                       if shutil.which(name)), None)
        if not binary:
            raise SystemExit("Chromium not found: apt-get install -y chromium")
        self.profile = tempfile.mkdtemp(prefix="sw_shots_")
        self.process = subprocess.Popen([
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}", "about:blank"], stderr=subprocess.DEVNULL)
        port_file = Path(self.profile, "DevToolsActivePort")
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), "Chromium", timeout=20)
        port = port_file.read_text().splitlines()[0]
        page = next(target for target in requests.get(f"http://127.0.0.1:{port}/json", timeout=10).json()
                    if target["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True)
        self.next_id = 0
        self.send("Network.enable")
        self.send("Network.setCookie", name="session_id", value=cookie, url=url)
        self.send("Emulation.setTimezoneOverride", timezoneId=timezone)  # Odoo shows dates in the browser's zone
        self.send("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
                  mobile=False)

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self.ws.recv())
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise SystemExit(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def evaluate(self, expression):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def shoot(self, url, selector, path, before=""):
        self.send("Page.navigate", url=url)
        wait_for(lambda: self.evaluate(f"!!document.querySelector({json.dumps(selector)})"), selector)
        if before:
            self.evaluate(before)
        time.sleep(1.5)  # images, fonts and the last RPCs
        data = self.send("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        print(f"saved {path}")

    def close(self):
        self.ws.close()
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def set_language(odoo, login, code, timezone):
    """Install ``code`` if needed and make it the user's language, in ``timezone``."""
    found = odoo.call("res.lang", "search_read", [("code", "=", code)], ["active"], context={"active_test": False})
    if not found:
        raise SystemExit(f"unknown language {code}")
    if not found[0]["active"]:
        wizard = odoo.call("base.language.install", "create", {"lang_ids": [(6, 0, [found[0]["id"]])]})
        odoo.call("base.language.install", "lang_install", [wizard])
    user_id = odoo.call("res.users", "search", [("login", "=", login)])[0]
    odoo.call("res.users", "write", [user_id], {"lang": code, "tz": timezone})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--odoo", default="http://127.0.0.1:8069")
    parser.add_argument("--db", default="strato_whatsapp_demo")
    parser.add_argument("--login", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--simulator", default="http://127.0.0.1:8899")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--lang", default="es_ES", help="the user's language for the screenshots")
    parser.add_argument("--tz", default="Europe/Madrid", help="the user's (and the browser's) timezone")
    arguments = parser.parse_args(argv)

    odoo = Odoo(arguments.odoo, arguments.db, arguments.login, arguments.password)
    if arguments.lang:
        set_language(odoo, arguments.login, arguments.lang, arguments.tz)
    simulator = ControlClient(arguments.simulator)
    simulator.wait_ready()
    lead_id = play_conversation(odoo, simulator, f"{odoo.url}/api/webhooks/whatsapp")
    template_ids = odoo.call("strato.whatsapp.template", "search", [], limit=1)
    if template_ids:  # the preview shows the template as Lucía would read it
        odoo.call("strato.whatsapp.template", "write", template_ids, {"preview_lead_id": lead_id})

    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    browser = Browser(odoo.session.cookies["session_id"], odoo.url, arguments.tz)
    try:
        browser.shoot(f"{odoo.url}/odoo/crm.lead/{lead_id}", ".o_sw_chat .o_sw_reaction", out / "lead_chat.png",
                      before="document.querySelector('.o_sw_chat').scrollIntoView({block: 'end'});"
                             "document.querySelector('.o_sw_messages').scrollTop = 1e6;")
        new_contact_writes(odoo, simulator, f"{odoo.url}/api/webhooks/whatsapp")  # an unread one in the inbox
        browser.shoot(f"{odoo.url}/odoo/action-strato_whatsapp.strato_whatsapp_conversation_action",
                      ".o_sw_conversation_kanban .o_kanban_record", out / "inbox.png")
        if template_ids:
            browser.shoot(f"{odoo.url}/odoo/action-strato_whatsapp.strato_whatsapp_template_action/{template_ids[0]}",
                          ".o_form_view .o_field_widget[name='preview_html']", out / "template_preview.png")
    finally:
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
