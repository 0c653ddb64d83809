"""The Graph API simulator, over real HTTP on 127.0.0.1."""
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_simulator import GraphSimulator, payloads
from graph_simulator.control import ControlClient

PHONE = "100000000000001"
WABA = "200000000000001"
APP = "300000000000001"
TOKEN = "sim-token"
SECRET = "sim-app-secret"
OTHER = {
    "phone_number_id": "100000000000002", "waba_id": "200000000000002", "access_token": "other-token",
    "app_secret": "other-secret", "display_phone_number": "+34 600 000 002",
    "verified_name": "Strato Norte", "app_id": "300000000000002",
}
DEVTOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture
def sim():
    simulator = GraphSimulator(accounts=[{}, OTHER]).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False  # never a proxy for loopback
    yield session
    session.close()


class Receiver:
    """A tiny webhook endpoint recording raw bodies and headers."""

    def __init__(self, status=200):
        self.status = status
        self.received = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.received.append({"headers": dict(self.headers), "body": body})
                    receiver.arrived.notify_all()
                answer = b'{"ok": true}'
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/whatsapp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count, timeout=5.0):
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
        return self.received

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def graph(http, sim, method, path, token=TOKEN, version="v25.0", **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    prefix = f"/{version}" if version else ""
    return http.request(method, f"{sim.url}{prefix}{path}", headers=headers, timeout=10, **kwargs)


def send(http, sim, payload, **kwargs):
    return graph(http, sim, "POST", f"/{PHONE}/messages", json=payload, **kwargs)


def text_send(to="34611222333", body="Hola", **extra):
    return dict({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                 "type": "text", "text": {"body": body}}, **extra)


def assert_graph_error(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"]
    assert error["fbtrace_id"]
    return error


def raw_exchange(sim, data, read_timeout=2.0):
    """Send raw bytes on a fresh connection; everything read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=read_timeout) as conn:
        conn.sendall(data)
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except socket.timeout:
            pass
    return b"".join(chunks)


def expected_signature(body, secret):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------
def test_start_listens_and_stop_leaves_nothing_behind():
    simulator = GraphSimulator()
    simulator.start()
    port, thread = simulator.port, simulator._thread
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    simulator.stop()
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_stop_closes_open_keep_alive_connections(http):
    simulator = GraphSimulator().start()
    assert graph(http, simulator, "GET", f"/{PHONE}").status_code == 200  # leaves a pooled connection
    thread = simulator._thread
    simulator.stop()
    assert not thread.is_alive()


def test_context_manager_and_restart(http):
    with GraphSimulator() as simulator:
        assert graph(http, simulator, "GET", f"/{PHONE}").status_code == 200
    simulator.start()
    try:
        assert graph(http, simulator, "GET", f"/{PHONE}").status_code == 200
    finally:
        simulator.stop()


def test_start_reports_a_port_already_in_use():
    with GraphSimulator() as first:
        with pytest.raises(OSError):
            GraphSimulator(port=first.port).start()


# --------------------------------------------------------------------------------------------
# Graph API: phone number, auth, versions
# --------------------------------------------------------------------------------------------
def test_phone_number_details(http, sim):
    response = graph(http, sim, "GET", f"/{PHONE}")
    assert response.status_code == 200
    assert response.json() == {
        "id": PHONE, "display_phone_number": "+34 600 000 000", "verified_name": "Strato Inmobiliaria",
        "quality_rating": "GREEN", "code_verification_status": "VERIFIED", "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
    }


def test_phone_number_fields_parameter(http, sim):
    response = graph(http, sim, "GET", f"/{PHONE}", params={"fields": "verified_name,quality_rating"})
    assert response.json() == {"id": PHONE, "verified_name": "Strato Inmobiliaria", "quality_rating": "GREEN"}


@pytest.mark.parametrize("version", ["v21.0", "v25.0", "v26.0", None])
def test_any_version_prefix_is_accepted_and_recorded(http, sim, version):
    assert graph(http, sim, "GET", f"/{PHONE}", version=version).status_code == 200
    assert sim.requests()[-1]["version"] == version


def test_missing_token_is_401_code_190(http, sim):
    assert_graph_error(graph(http, sim, "GET", f"/{PHONE}", token=None), 401, 190)


def test_unknown_token_is_401_code_190(http, sim):
    assert_graph_error(graph(http, sim, "POST", f"/{PHONE}/messages", token="nope", json=text_send()), 401, 190)


def test_token_of_another_account_is_403_code_200(http, sim):
    assert_graph_error(graph(http, sim, "GET", f"/{PHONE}", token="other-token"), 403, 200)
    assert_graph_error(send(http, sim, text_send(), token="other-token"), 403, 200)
    assert graph(http, sim, "GET", f"/{OTHER['phone_number_id']}", token="other-token").status_code == 200


def test_unknown_object_is_400_code_100(http, sim):
    error = assert_graph_error(graph(http, sim, "GET", "/999999999"), 400, 100)
    assert error["message"].startswith("Unsupported get request. Object with ID '999999999'")


def test_unknown_edge_and_path_are_400_code_100(http, sim):
    assert_graph_error(graph(http, sim, "GET", f"/{PHONE}/nothing_here"), 400, 100)
    assert_graph_error(graph(http, sim, "GET", f"/{PHONE}/a/b"), 400, 100)


def test_access_token_query_parameter(http, sim):
    response = graph(http, sim, "GET", f"/{PHONE}", token=None, params={"access_token": TOKEN})
    assert response.status_code == 200


def test_waba_details_and_phone_numbers(http, sim):
    assert graph(http, sim, "GET", f"/{WABA}").json()["id"] == WABA
    numbers = graph(http, sim, "GET", f"/{WABA}/phone_numbers").json()["data"]
    assert [number["id"] for number in numbers] == [PHONE]
    assert graph(http, sim, "POST", f"/{WABA}/subscribed_apps").json() == {"success": True}


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------
def test_text_send_answer_and_record(http, sim):
    response = send(http, sim, text_send(biz_opaque_callback_data="lead-7"))
    assert response.status_code == 200
    answer = response.json()
    wamid = answer["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert answer == {"messaging_product": "whatsapp",
                      "contacts": [{"input": "34611222333", "wa_id": "34611222333"}],
                      "messages": [{"id": wamid}]}
    sent = sim.sent()
    assert sent["by_callback"] == {"lead-7": 1}
    [record] = sent["messages"]
    assert record["wamid"] == wamid and record["to"] == "34611222333" and record["type"] == "text"
    assert record["payload"]["text"]["body"] == "Hola"


def test_wamids_are_unique(http, sim):
    wamids = {send(http, sim, text_send()).json()["messages"][0]["id"] for _ in range(50)}
    assert len(wamids) == 50


VALID_SENDS = {
    "template": {"template": {"name": "cita_visita", "language": {"code": "es"},
                              "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}},
    "image": {"image": {"id": "900000000000001", "caption": "Salón"}},
    "video": {"video": {"link": "https://example.com/tour.mp4"}},
    "audio": {"audio": {"id": "900000000000002"}},
    "document": {"document": {"link": "https://example.com/ficha.pdf", "filename": "ficha.pdf"}},
    "sticker": {"sticker": {"id": "900000000000003"}},
    "location": {"location": {"latitude": 40.41, "longitude": -3.70, "name": "Piso Sol"}},
    "contacts": {"contacts": [{"name": {"formatted_name": "Ana García"}, "phones": [{"phone": "+34611222333"}]}]},
    "interactive": {"interactive": {"type": "button", "body": {"text": "¿Visita?"}, "action": {"buttons": [
        {"type": "reply", "reply": {"id": "yes", "title": "Sí"}}]}}},
    "reaction": {"reaction": {"message_id": "wamid.ABC", "emoji": "\U0001F44D"}},
}


@pytest.mark.parametrize("msg_type", sorted(VALID_SENDS))
def test_every_send_type_is_accepted(http, sim, msg_type):
    payload = {"messaging_product": "whatsapp", "to": "34611222333", "type": msg_type, **VALID_SENDS[msg_type]}
    response = send(http, sim, payload)
    assert response.status_code == 200, response.text
    message = response.json()["messages"][0]
    assert ("message_status" in message) == (msg_type == "template")
    if msg_type == "template":
        assert message["message_status"] == "accepted"
    assert sim.sent()["messages"][0]["type"] == msg_type


def test_list_message_is_accepted(http, sim):
    interactive = {"type": "list", "body": {"text": "Elige"}, "action": {"button": "Ver", "sections": [
        {"title": "Pisos", "rows": [{"id": "p1", "title": "Sol"}]}]}}
    payload = {"messaging_product": "whatsapp", "to": "34611222333", "type": "interactive",
               "interactive": interactive, "context": {"message_id": "wamid.PREV"}}
    assert send(http, sim, payload).status_code == 200


INVALID_SENDS = [
    ({"to": "34611222333", "type": "text", "text": {"body": "x"}}, "messaging_product"),
    ({"messaging_product": "sms", "to": "34611222333", "type": "text", "text": {"body": "x"}}, "messaging_product"),
    ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, "to"),
    ({"messaging_product": "whatsapp", "to": "not-a-number", "type": "text", "text": {"body": "x"}}, "to"),
    ({"messaging_product": "whatsapp", "recipient": "34611222333", "type": "text", "text": {"body": "x"}},
     "recipient"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "text", "text": {"body": ""}}, "text.body"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "text"}, "text"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "fax", "fax": {}}, "type"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "image", "image": {"caption": "x"}}, "image"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "template",
      "template": {"name": "hola", "language": {}}}, "template.language.code"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "template",
      "template": {"language": {"code": "es"}}}, "template.name"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "reaction",
      "reaction": {"emoji": "x"}}, "reaction.message_id"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "location",
      "location": {"latitude": "north"}}, "location.latitude"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "interactive", "interactive": {
        "type": "button", "body": {"text": "x"}, "action": {"buttons": [{}, {}, {}, {}]}}}, "buttons"),
    ({"messaging_product": "whatsapp", "to": "34611222333", "type": "text", "text": {"body": "x"},
      "context": {}}, "context.message_id"),
]


@pytest.mark.parametrize("payload, bad_parameter", INVALID_SENDS)
def test_invalid_sends_are_400_code_100_naming_the_parameter(http, sim, payload, bad_parameter):
    error = assert_graph_error(send(http, sim, payload), 400, 100)
    assert bad_parameter in error["error_data"]["details"]
    assert sim.sent()["messages"] == []


def test_body_that_is_not_json_is_400(http, sim):
    response = graph(http, sim, "POST", f"/{PHONE}/messages", data=b"{not json",
                     headers={"Content-Type": "application/json"})
    assert_graph_error(response, 400, 100)


def test_send_to_business_scoped_user_id(http, sim):
    payload = {"messaging_product": "whatsapp", "recipient": "US.13491208655302741918", "type": "text",
               "text": {"body": "Hola"}}
    answer = send(http, sim, payload).json()
    assert answer["contacts"] == [{"input": "US.13491208655302741918", "user_id": "US.13491208655302741918"}]
    record = sim.sent()["messages"][0]
    assert record["recipient"] == "US.13491208655302741918" and record["to"] is None


def test_mark_as_read_with_typing_indicator(http, sim):
    payload = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1",
               "typing_indicator": {"type": "text"}}
    response = send(http, sim, payload)
    assert response.json() == {"success": True}
    assert sim.sent()["messages"] == []
    assert sim.requests("/messages")[-1]["json"]["status"] == "read"


def test_mark_as_read_without_message_id_is_400(http, sim):
    response = send(http, sim, {"messaging_product": "whatsapp", "status": "read"})
    assert "message_id" in assert_graph_error(response, 400, 100)["error_data"]["details"]


# --------------------------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------------------------
def test_media_upload_info_and_download_round_trip(http, sim):
    content = os.urandom(50_000) + b"\r\n--not-a-boundary\r\n"
    response = graph(http, sim, "POST", f"/{PHONE}/media",
                     files={"file": ("plano.png", content, "image/png")},
                     data={"type": "image/png", "messaging_product": "whatsapp"})
    assert response.status_code == 200, response.text
    media_id = response.json()["id"]
    info = graph(http, sim, "GET", f"/{media_id}").json()
    assert info["messaging_product"] == "whatsapp" and info["id"] == media_id
    assert info["mime_type"] == "image/png"
    assert info["sha256"] == hashlib.sha256(content).hexdigest()
    assert info["file_size"] == len(content)
    assert info["url"].startswith(f"{sim.url}/_media/{media_id}?sig=")
    download = http.get(info["url"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["Content-Type"] == "image/png"


def test_media_download_needs_the_token_and_the_signature(http, sim):
    media_id = sim.add_media(b"%PDF-1.4 ficha", "application/pdf", "ficha.pdf")
    url = graph(http, sim, "GET", f"/{media_id}").json()["url"]
    assert_graph_error(http.get(url, timeout=10), 401, 190)
    assert_graph_error(http.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10), 401, 190)
    tampered = url.rsplit("sig=", 1)[0] + "sig=forged"
    assert http.get(tampered, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 404
    download = http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert download.content == b"%PDF-1.4 ficha"
    assert 'filename="ficha.pdf"' in download.headers["Content-Disposition"]


def test_media_upload_without_file_or_product_is_400(http, sim):
    no_file = graph(http, sim, "POST", f"/{PHONE}/media", files={"messaging_product": (None, "whatsapp"),
                                                                  "type": (None, "image/png")})
    assert "file" in assert_graph_error(no_file, 400, 100)["error_data"]["details"]
    no_product = graph(http, sim, "POST", f"/{PHONE}/media", files={"file": ("a.png", b"x", "image/png")})
    assert "messaging_product" in assert_graph_error(no_product, 400, 100)["error_data"]["details"]
    not_multipart = graph(http, sim, "POST", f"/{PHONE}/media", json={"file": "x"})
    assert_graph_error(not_multipart, 400, 100)


def test_media_of_another_account_is_403_and_delete_works(http, sim):
    response = graph(http, sim, "POST", f"/{PHONE}/media", files={"file": ("a.ogg", b"OggS", "audio/ogg")},
                     data={"type": "audio/ogg", "messaging_product": "whatsapp"})
    media_id = response.json()["id"]
    assert_graph_error(graph(http, sim, "GET", f"/{media_id}", token="other-token"), 403, 200)
    assert graph(http, sim, "DELETE", f"/{media_id}").json() == {"success": True}
    assert_graph_error(graph(http, sim, "GET", f"/{media_id}"), 400, 100)


def test_seeded_media_through_the_control_route(http, sim):
    client = ControlClient(sim.url)
    media_id = client.add_media(b"\x89PNG fake", "image/png", "foto.png")
    info = graph(http, sim, "GET", f"/{media_id}").json()
    download = http.get(info["url"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert download.content == b"\x89PNG fake"


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------
def seven_templates():
    return [{"name": f"plantilla_{index}", "language": "es", "category": "MARKETING" if index % 2 else "UTILITY",
             "components": [{"type": "BODY", "text": f"Hola {{{{1}}}} #{index}"}]} for index in range(7)]


def test_template_paging_follows_next_until_the_last_page(http, sim):
    sim.seed_templates(seven_templates())
    url = f"{sim.url}/v25.0/{WABA}/message_templates?limit=3"
    names, pages = [], 0
    while url:
        answer = http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
        pages += 1
        names += [template["name"] for template in answer["data"]]
        assert answer["paging"]["cursors"]["before"] and answer["paging"]["cursors"]["after"]
        url = answer["paging"].get("next")
    assert pages == 3
    assert names == [f"plantilla_{index}" for index in range(7)]


def test_template_objects_look_like_meta(http, sim):
    [template_id] = sim.seed_templates([{"name": "bienvenida", "language": "es", "category": "UTILITY",
                                         "quality_score": {"score": "GREEN"}}])
    [template] = graph(http, sim, "GET", f"/{WABA}/message_templates").json()["data"]
    assert template["id"] == template_id
    for key in ("name", "language", "status", "category", "parameter_format", "components",
                "quality_score", "rejected_reason"):
        assert key in template
    assert template["status"] == "APPROVED" and template["quality_score"] == {"score": "GREEN"}


def test_template_list_filters_and_fields(http, sim):
    sim.seed_templates(seven_templates())
    answer = graph(http, sim, "GET", f"/{WABA}/message_templates",
                   params={"name": "plantilla_3", "fields": "name,status"}).json()
    assert [set(template) for template in answer["data"]] == [{"id", "name", "status"}]
    assert "next" not in answer["paging"]
    marketing = graph(http, sim, "GET", f"/{WABA}/message_templates", params={"category": "MARKETING"}).json()
    assert len(marketing["data"]) == 3


def test_templates_of_another_waba_stay_apart(http, sim):
    sim.seed_templates([{"name": "norte", "language": "es"}], waba_id=OTHER["waba_id"])
    assert graph(http, sim, "GET", f"/{WABA}/message_templates").json()["data"] == []
    other = graph(http, sim, "GET", f"/{OTHER['waba_id']}/message_templates", token="other-token").json()
    assert [template["name"] for template in other["data"]] == ["norte"]
    assert_graph_error(graph(http, sim, "GET", f"/{OTHER['waba_id']}/message_templates"), 403, 200)


def test_create_template_then_duplicate_is_rejected(http, sim):
    body = {"name": "recordatorio_visita", "language": "es", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Le esperamos {{1}}", "example": {"body_text": [["mañana"]]}}]}
    response = graph(http, sim, "POST", f"/{WABA}/message_templates", json=body)
    assert response.status_code == 200
    created = response.json()
    assert created["status"] == "PENDING" and created["category"] == "UTILITY" and created["id"]
    duplicate = graph(http, sim, "POST", f"/{WABA}/message_templates", json=body)
    assert assert_graph_error(duplicate, 400, 100)["error_subcode"] == 2388024
    other_language = graph(http, sim, "POST", f"/{WABA}/message_templates", json=dict(body, language="en_US"))
    assert other_language.status_code == 200


@pytest.mark.parametrize("change", [{"category": "SPAM"}, {"name": "Con Mayúsculas"}, {"components": []},
                                    {"language": None}])
def test_create_template_validation(http, sim, change):
    body = dict({"name": "ok_name", "language": "es", "category": "MARKETING",
                 "components": [{"type": "BODY", "text": "x"}]}, **change)
    assert_graph_error(graph(http, sim, "POST", f"/{WABA}/message_templates", json=body), 400, 100)


def test_edit_template(http, sim):
    [template_id] = sim.seed_templates([{"name": "oferta", "language": "es", "category": "MARKETING"}])
    components = [{"type": "BODY", "text": "Nueva oferta {{1}}"}]
    response = graph(http, sim, "POST", f"/{template_id}", json={"components": components, "category": "UTILITY"})
    assert response.json() == {"success": True}
    template = graph(http, sim, "GET", f"/{template_id}").json()
    assert template["components"] == components and template["category"] == "UTILITY"
    assert_graph_error(graph(http, sim, "POST", f"/{template_id}", json={}), 400, 100)


def test_delete_template_by_name(http, sim):
    sim.seed_templates([{"name": "vieja", "language": "es"}, {"name": "vieja", "language": "en_US"}])
    assert graph(http, sim, "DELETE", f"/{WABA}/message_templates", params={"name": "vieja"}).json()["success"]
    assert graph(http, sim, "GET", f"/{WABA}/message_templates").json()["data"] == []


def test_set_template_status_and_clear(http, sim):
    [template_id] = sim.seed_templates([{"name": "pendiente", "language": "es", "status": "PENDING"}])
    sim.set_template_status(template_id, "REJECTED", "INVALID_FORMAT")
    template = graph(http, sim, "GET", f"/{template_id}").json()
    assert template["status"] == "REJECTED" and template["rejected_reason"] == "INVALID_FORMAT"
    sim.clear_templates()
    assert graph(http, sim, "GET", f"/{WABA}/message_templates").json()["data"] == []


def test_resumable_upload_gives_a_handle(http, sim):
    start = graph(http, sim, "POST", f"/{APP}/uploads",
                  params={"file_name": "cabecera.jpg", "file_length": "4", "file_type": "image/jpeg"})
    upload_id = start.json()["id"]
    assert upload_id.startswith("upload:")
    response = http.post(f"{sim.url}/v25.0/{upload_id}", data=b"\xff\xd8\xff\xe0", timeout=10,
                         headers={"Authorization": f"OAuth {TOKEN}", "file_offset": "0"})
    assert response.status_code == 200
    assert response.json()["h"].startswith("4::")
    status = http.get(f"{sim.url}/v25.0/{upload_id}", headers={"Authorization": f"OAuth {TOKEN}"}, timeout=10)
    assert status.json()["file_offset"] == 4


def test_resumable_upload_validation(http, sim):
    missing = graph(http, sim, "POST", f"/{APP}/uploads", params={"file_type": "image/jpeg"})
    assert "file_length" in assert_graph_error(missing, 400, 100)["error_data"]["details"]
    upload_id = graph(http, sim, "POST", f"/{APP}/uploads",
                      params={"file_length": "4", "file_type": "image/jpeg"}).json()["id"]
    wrong_offset = http.post(f"{sim.url}/v25.0/{upload_id}", data=b"abcd", timeout=10,
                             headers={"Authorization": f"OAuth {TOKEN}", "file_offset": "7"})
    assert_graph_error(wrong_offset, 400, 100)


# --------------------------------------------------------------------------------------------
# Control routes
# --------------------------------------------------------------------------------------------
def test_control_requests_log_and_filter(http, sim):
    graph(http, sim, "GET", f"/{PHONE}")
    send(http, sim, text_send())
    entries = http.get(f"{sim.url}/_sim/requests", params={"path_contains": "/messages"}, timeout=10).json()
    [entry] = entries["requests"]
    assert entry["method"] == "POST" and entry["path"] == f"/v25.0/{PHONE}/messages"
    assert entry["version"] == "v25.0" and entry["status"] == 200
    assert entry["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert entry["json"]["text"]["body"] == "Hola"
    assert len(sim.requests()) == 2  # control routes are not logged


def test_request_log_keeps_the_last_ten_thousand(sim):
    request = type("Request", (), {"method": "GET", "path": "/x", "query_string": "", "headers": {}, "json": None})
    for _ in range(10_050):
        sim.state.record_request(request, None, 200)
    assert len(sim.requests()) == 10_000


def test_control_sent_stats_and_reset(http, sim):
    sim.seed_templates([{"name": "se_queda", "language": "es"}])
    for number in range(3):
        send(http, sim, text_send(biz_opaque_callback_data=f"cb-{number % 2}"))
    graph(http, sim, "GET", "/404404")
    sent = http.get(f"{sim.url}/_sim/sent", timeout=10).json()
    assert len(sent["messages"]) == 3 and sent["by_callback"] == {"cb-0": 2, "cb-1": 1}
    stats = http.get(f"{sim.url}/_sim/stats", timeout=10).json()
    assert stats["requests"] == 4 and stats["sends_accepted"] == 3
    assert stats["by_status"] == {"200": 3, "400": 1}
    sim.set_faults([{"kind": "http", "status": 500}])
    assert http.post(f"{sim.url}/_sim/reset", timeout=10).json() == {"success": True}
    assert sim.requests() == [] and sim.sent() == {"messages": [], "by_callback": {}}
    assert sim.stats()["requests"] == 0 and sim.stats()["faults"] == []
    assert send(http, sim, text_send()).status_code == 200  # the fault went with the reset
    assert [t["name"] for t in graph(http, sim, "GET", f"/{WABA}/message_templates").json()["data"]] == ["se_queda"]


def test_control_templates_routes(http, sim):
    response = http.post(f"{sim.url}/_sim/templates", timeout=10,
                         json={"templates": [{"name": "desde_control", "language": "es"}]})
    assert len(response.json()["ids"]) == 1
    assert graph(http, sim, "GET", f"/{WABA}/message_templates").json()["data"][0]["name"] == "desde_control"
    assert http.delete(f"{sim.url}/_sim/templates", timeout=10).json() == {"success": True}
    assert graph(http, sim, "GET", f"/{WABA}/message_templates").json()["data"] == []


def test_control_route_errors_are_400_or_404(http, sim):
    assert http.get(f"{sim.url}/_sim/nothing", timeout=10).status_code == 404
    assert http.post(f"{sim.url}/_sim/faults", json={"rules": [{"kind": "explode"}]}, timeout=10).status_code == 400
    assert http.post(f"{sim.url}/_sim/faults", data=b"{", timeout=10).status_code == 400
    assert http.post(f"{sim.url}/_sim/media", json={"content_b64": "!!", "mime_type": "x/y"},
                     timeout=10).status_code == 400


def test_control_client_methods(http, sim, receiver):
    client = ControlClient(sim.url)
    assert client.wait_ready() == {"ok": True}
    [template_id] = client.seed_templates([{"name": "cliente", "language": "es", "status": "PENDING"}])
    assert client.set_template_status(template_id, "APPROVED")["status"] == "APPROVED"
    client.set_faults([{"kind": "http", "status": 503, "count": 1}], seed=1)
    assert send(http, sim, text_send()).status_code == 503
    assert send(http, sim, text_send(biz_opaque_callback_data="c1")).status_code == 200
    assert [entry["status"] for entry in client.requests("/messages")] == [503, 200]
    assert client.sent()["by_callback"] == {"c1": 1}
    assert client.stats()["faults_injected"] == 1
    status, body = client.post_webhook(receiver.url, payloads.inbound_message(PHONE, "+34 600 000 000",
                                                                              "34611222333", "Ana"))
    assert (status, json.loads(body)) == (200, {"ok": True})
    client.clear_templates()
    client.reset()
    assert client.requests() == [] and client.sent()["messages"] == []


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------
def test_fault_429_with_retry_after_for_the_next_two_sends(http, sim):
    sim.set_faults([{"path_contains": "/messages", "method": "POST", "kind": "http", "status": 429,
                     "code": 130429, "message": "Rate limit hit", "retry_after": 2, "count": 2}])
    first, second, third = (send(http, sim, text_send()) for _ in range(3))
    for response in (first, second):
        error = assert_graph_error(response, 429, 130429)
        assert error["message"] == "Rate limit hit"
        assert response.headers["Retry-After"] == "2"
    assert third.status_code == 200
    assert len(sim.sent()["messages"]) == 1
    assert sim.stats()["faults_injected"] == 2
    assert [entry.get("fault") for entry in sim.requests()] == ["http", "http", None]


def test_fault_500_defaults_to_a_transient_code(http, sim):
    sim.set_faults([{"kind": "http", "status": 500}])
    assert_graph_error(send(http, sim, text_send()), 500, 131000)
    assert_graph_error(graph(http, sim, "GET", f"/{PHONE}"), 500, 131000)


def test_fault_filters_on_method_and_path(http, sim):
    sim.set_faults([{"path_contains": "/message_templates", "method": "GET", "status": 500}])
    assert send(http, sim, text_send()).status_code == 200
    assert graph(http, sim, "POST", f"/{WABA}/message_templates", json={}).status_code == 400
    assert graph(http, sim, "GET", f"/{WABA}/message_templates").status_code == 500


def test_fault_drop_closes_the_connection_without_answer(http, sim):
    sim.set_faults([{"kind": "drop", "count": 1}])
    with pytest.raises(requests.ConnectionError):
        send(http, sim, text_send())
    assert send(http, sim, text_send()).status_code == 200
    assert sim.requests()[0]["status"] is None and sim.requests()[0]["fault"] == "drop"
    assert raw_exchange(sim, b"GET /_sim/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200")


def test_fault_delay_answers_late_but_normally(http, sim):
    sim.set_faults([{"kind": "delay", "delay": 0.3}])
    started = time.monotonic()
    response = send(http, sim, text_send())
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert sim.requests()[0]["fault"] == "delay"


def test_fault_timeout_never_answers(http, sim):
    sim.set_faults([{"kind": "timeout", "delay": 5, "count": 1}])
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        http.post(f"{sim.url}/v25.0/{PHONE}/messages", json=text_send(), timeout=0.4,
                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert time.monotonic() - started < 2
    assert send(http, sim, text_send()).status_code == 200  # the rest of the server kept serving


def test_fault_timeout_closes_after_its_delay(sim):
    sim.set_faults([{"kind": "timeout", "delay": 0.2}])
    answer = raw_exchange(sim, b"GET /v25.0/" + PHONE.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=3)
    assert answer == b""


def run_with_probability(seed):
    with GraphSimulator() as simulator, requests.Session() as session:
        session.trust_env = False
        simulator.set_faults([{"kind": "http", "status": 500, "probability": 0.3}], seed=seed)
        return [send(session, simulator, text_send()).status_code for _ in range(60)]


def test_fault_probability_is_repeatable_with_a_seed():
    first, second = run_with_probability(7), run_with_probability(7)
    assert first == second
    assert 5 <= first.count(500) <= 35
    assert run_with_probability(8) != first


def test_fault_only_for_one_recipient(http, sim):
    sim.set_faults([{"to": "+5491123456789", "kind": "http", "status": 400, "code": 131026}])
    assert send(http, sim, text_send(to="34611222333")).status_code == 200
    assert_graph_error(send(http, sim, text_send(to="5491123456789")), 400, 131026)
    assert graph(http, sim, "GET", f"/{PHONE}").status_code == 200


def test_faults_are_listed(http, sim):
    sim.set_faults([{"kind": "http", "status": 429, "count": 3}])
    send(http, sim, text_send())
    [rule] = http.get(f"{sim.url}/_sim/faults", timeout=10).json()["rules"]
    assert rule["remaining"] == 2 and rule["code"] == 130429


# --------------------------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------------------------
def test_post_webhook_signs_the_exact_bytes(sim, receiver):
    payload = payloads.inbound_message(PHONE, "+34 600 000 000", "34611222333", "Ana Ñúñez",
                                       body="¿Sigue disponible? https://strato.es/piso/1")
    status, body = sim.post_webhook(receiver.url, payload)
    assert status == 200 and json.loads(body) == {"ok": True}
    [delivery] = receiver.received
    raw = delivery["body"]
    assert delivery["headers"]["X-Hub-Signature-256"] == expected_signature(raw, SECRET)
    assert delivery["headers"]["Content-Type"] == "application/json"
    assert json.loads(raw) == payload
    assert b"\\/" in raw and b"\\u00d1" in raw  # escaped like Meta: re-serializing breaks the signature


def test_post_webhook_uses_the_secret_of_the_account_in_the_payload(sim, receiver):
    payload = payloads.inbound_message(OTHER["phone_number_id"], OTHER["display_phone_number"], "34611222333",
                                       "Ana", waba_id=OTHER["waba_id"])
    sim.post_webhook(receiver.url, payload)
    sim.post_webhook(receiver.url, payload, app_secret="explicit-secret")
    first, second = receiver.wait_for(2)
    assert first["headers"]["X-Hub-Signature-256"] == expected_signature(first["body"], "other-secret")
    assert second["headers"]["X-Hub-Signature-256"] == expected_signature(second["body"], "explicit-secret")


def test_post_webhook_with_a_bad_signature(sim, receiver):
    sim.post_webhook(receiver.url, payloads.inbound_message(PHONE, "34600000000", "34611222333", "Ana"),
                     bad_signature=True)
    [delivery] = receiver.received
    assert delivery["headers"]["X-Hub-Signature-256"].startswith("sha256=")
    assert delivery["headers"]["X-Hub-Signature-256"] != expected_signature(delivery["body"], SECRET)


def test_post_webhook_through_the_control_route_reports_the_target_status(http, sim):
    failing = Receiver(status=500)
    try:
        answer = http.post(f"{sim.url}/_sim/webhook", timeout=10, json={
            "target_url": failing.url, "payload": payloads.status_update(PHONE, "wamid.X", "read", "34611222333"),
            "sign": True, "bad_signature": False}).json()
        assert answer["status"] == 500 and "ok" in answer["body"]
        assert failing.received[0]["headers"]["X-Hub-Signature-256"] == expected_signature(
            failing.received[0]["body"], SECRET)
    finally:
        failing.close()
    assert sim.stats()["webhooks_failed"] == 1


def test_post_webhook_to_nowhere_gives_status_0(sim):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    status, body = sim.post_webhook(f"http://127.0.0.1:{port}/hook", payloads.envelope(WABA, []))
    assert status == 0 and body


def test_post_webhook_reuses_its_connection(sim, receiver):
    for _ in range(5):
        assert sim.post_webhook(receiver.url, payloads.envelope(WABA, []))[0] == 200
    assert len(receiver.received) == 5


def test_auto_status_posts_sent_then_delivered(http, receiver):
    with GraphSimulator(webhook_url=receiver.url, auto_status=True, status_delay=0.05) as simulator:
        payload = text_send(biz_opaque_callback_data="lead-9")
        wamid = send(http, simulator, payload).json()["messages"][0]["id"]
        deliveries = receiver.wait_for(2)
    statuses = []
    for delivery in deliveries:
        assert delivery["headers"]["X-Hub-Signature-256"] == expected_signature(delivery["body"], SECRET)
        statuses += json.loads(delivery["body"])["entry"][0]["changes"][0]["value"]["statuses"]
    assert [status["status"] for status in statuses] == ["sent", "delivered"]
    assert {status["id"] for status in statuses} == {wamid}
    assert statuses[0]["recipient_id"] == "34611222333"
    assert statuses[0]["biz_opaque_callback_data"] == "lead-9"
    assert statuses[0]["pricing"]["category"] == "service"


# --------------------------------------------------------------------------------------------
# HTTP robustness and keep-alive
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [
    b"NONSENSE\r\n\r\n",
    b"GET /x\r\n\r\n",
    b"GET /x HTTP/2.0\r\n\r\n",
    b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n",
    b"POST /x HTTP/1.1\r\nContent-Length: twelve\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET x HTTP/1.1\r\n\r\n",
])
def test_malformed_requests_get_400_and_the_server_survives(http, sim, garbage):
    answer = raw_exchange(sim, garbage)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert graph(http, sim, "GET", f"/{PHONE}").status_code == 200


def test_oversized_head_is_431(http, sim):
    answer = raw_exchange(sim, b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert graph(http, sim, "GET", f"/{PHONE}").status_code == 200


def test_truncated_body_and_abrupt_close_do_not_hurt(http, sim):
    with socket.create_connection(("127.0.0.1", sim.port)) as conn:
        conn.sendall(b"POST /v25.0/" + PHONE.encode() + b"/messages HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    with socket.create_connection(("127.0.0.1", sim.port)) as conn:
        conn.sendall(b"GET /v25.0/")
    assert graph(http, sim, "GET", f"/{PHONE}").status_code == 200


def test_keep_alive_pipelined_requests_on_one_connection(sim):
    one = f"GET /v25.0/{PHONE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    last = f"GET /v25.0/{PHONE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(sim, one * 3 + last.encode())
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    assert answer.count(b"Connection: close") == 1


def test_http_1_0_closes_and_chunked_bodies_and_expect_continue_work(sim):
    answer = raw_exchange(sim, f"GET /v25.0/{PHONE} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer
    body = json.dumps(text_send()).encode()
    chunked = (f"POST /v25.0/{PHONE}/messages HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
               f"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").encode()
    chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer = raw_exchange(sim, chunked)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert len(sim.sent()["messages"]) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.binary(min_size=1, max_size=300))
def test_random_bytes_never_break_the_server(sim, noise):
    answer = raw_exchange(sim, noise + b"\r\n\r\n", read_timeout=0.3)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
    probe = raw_exchange(sim, b"GET /_sim/health HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert probe.startswith(b"HTTP/1.1 200")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)
SEND_SHAPED = st.fixed_dictionaries(
    {"messaging_product": st.sampled_from(["whatsapp", "sms"]),
     "type": st.sampled_from(["text", "image", "template", "interactive", "reaction", "location"]) | JSON_VALUES},
    optional={"to": st.sampled_from(["34611222333", "+34611222333", "x"]) | JSON_VALUES,
              "recipient": st.sampled_from(["US.1abc", "nope"]) | JSON_VALUES, "status": JSON_VALUES,
              "text": JSON_VALUES, "image": JSON_VALUES, "template": JSON_VALUES, "interactive": JSON_VALUES,
              "reaction": JSON_VALUES, "location": JSON_VALUES, "contacts": JSON_VALUES, "context": JSON_VALUES})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=SEND_SHAPED | JSON_VALUES)
def test_any_json_sent_to_messages_is_answered_200_or_400(http, sim, payload):
    response = send(http, sim, payload)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["code"] == 100


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON_VALUES, route=st.sampled_from(["faults", "templates", "media", "reset", "templates/status"]))
def test_any_json_to_templates_and_control_routes_is_never_a_500(http, sim, payload, route):
    created = graph(http, sim, "POST", f"/{WABA}/message_templates", json=payload)
    assert created.status_code in (200, 400), created.text
    control = http.post(f"{sim.url}/_sim/{route}", json=payload, timeout=10)
    assert control.status_code in (200, 400), control.text
    sim.reset()
    assert graph(http, sim, "GET", f"/{WABA}/message_templates").status_code == 200


def test_deeply_nested_json_is_400(http, sim):
    response = graph(http, sim, "POST", f"/{PHONE}/messages", data=b"[" * 100_000 + b"]" * 100_000,
                     headers={"Content-Type": "application/json"})
    assert_graph_error(response, 400, 100)


def test_unicode_media_filename_download(http, sim):
    media_id = sim.add_media(b"data", "application/pdf", "contrato_año_\u4e2d.pdf")
    url = graph(http, sim, "GET", f"/{media_id}").json()["url"]
    download = http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert download.status_code == 200
    assert "filename*=UTF-8''contrato_a%C3%B1o_%E4%B8%AD.pdf" in download.headers["Content-Disposition"]


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------
def test_concurrent_clients_each_send_is_recorded_once(sim):
    threads_count, per_thread = 8, 40
    failures = []

    def client(index):
        with requests.Session() as session:
            session.trust_env = False
            for number in range(per_thread):
                callback = f"t{index}-{number}"
                response = send(session, sim, text_send(to=f"3461100{index:02d}{number:03d}",
                                                        biz_opaque_callback_data=callback))
                if response.status_code != 200:
                    failures.append(response.text)
                sim.requests("/messages")  # helpers from other threads, while serving

    threads = [threading.Thread(target=client, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    sent = sim.sent()
    assert len(sent["messages"]) == threads_count * per_thread
    assert len({message["wamid"] for message in sent["messages"]}) == threads_count * per_thread
    assert set(sent["by_callback"].values()) == {1}
    assert sim.stats()["by_status"] == {"200": threads_count * per_thread}


# --------------------------------------------------------------------------------------------
# Payload builders
# --------------------------------------------------------------------------------------------
def only_message(envelope):
    value = envelope["entry"][0]["changes"][0]["value"]
    [message] = value["messages"]
    return value, message


def test_inbound_text_envelope_shape():
    envelope = payloads.inbound_message(PHONE, "+34 600 000 000", "34611222333", "Ana", body="Hola",
                                        wamid="wamid.IN1", timestamp=1760000000)
    assert envelope["object"] == "whatsapp_business_account"
    entry = envelope["entry"][0]
    assert entry["id"] == WABA and entry["changes"][0]["field"] == "messages"
    value, message = only_message(envelope)
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {"display_phone_number": "34600000000", "phone_number_id": PHONE}
    assert value["contacts"] == [{"profile": {"name": "Ana"}, "wa_id": "34611222333"}]
    assert message == {"from": "34611222333", "id": "wamid.IN1", "timestamp": "1760000000", "type": "text",
                       "text": {"body": "Hola"}}


INBOUND_CASES = [
    ("image", {"media_id": "900000000000001", "caption": "Fachada"}, lambda m: m["image"]["caption"] == "Fachada"),
    ("video", {}, lambda m: m["video"]["mime_type"] == "video/mp4"),
    ("audio", {"voice": True}, lambda m: m["audio"]["voice"] is True),
    ("audio", {"voice": False}, lambda m: m["audio"]["voice"] is False),
    ("document", {"filename": "nomina.pdf"}, lambda m: m["document"]["filename"] == "nomina.pdf"),
    ("sticker", {}, lambda m: m["sticker"]["mime_type"] == "image/webp"),
    ("location", {"latitude": 41.38, "longitude": 2.17, "name": "Oficina"},
     lambda m: m["location"]["name"] == "Oficina"),
    ("contacts", {}, lambda m: m["contacts"][0]["name"]["formatted_name"]),
    ("interactive", {"reply_id": "visit_yes", "title": "Sí"},
     lambda m: m["interactive"] == {"type": "button_reply", "button_reply": {"id": "visit_yes", "title": "Sí"}}),
    ("interactive", {"interactive_type": "list_reply", "reply_id": "p1", "title": "Piso", "description": "Sol"},
     lambda m: m["interactive"]["list_reply"] == {"id": "p1", "title": "Piso", "description": "Sol"}),
    ("button", {"payload": "STOP", "text": "Baja"}, lambda m: m["button"] == {"payload": "STOP", "text": "Baja"}),
    ("reaction", {"message_id": "wamid.OUT", "emoji": ""}, lambda m: m["reaction"]["emoji"] == ""),
    ("order", {}, lambda m: m["order"]["product_items"]),
    ("unsupported", {}, lambda m: m["errors"][0]["code"] == 131051),
]


@pytest.mark.parametrize("msg_type, fields, check", INBOUND_CASES)
def test_inbound_builders_for_every_type(msg_type, fields, check):
    envelope = payloads.inbound_message(PHONE, "34600000000", "34611222333", "Ana", msg_type=msg_type, **fields)
    _value, message = only_message(envelope)
    assert message["type"] == msg_type
    assert check(message)
    if msg_type in ("image", "video", "audio", "document", "sticker"):
        assert {"id", "mime_type", "sha256"} <= set(message[msg_type])
    if msg_type in ("button", "interactive"):
        assert message["context"]["id"].startswith("wamid.")
    json.loads(payloads.dumps(envelope))


def test_inbound_reply_context_points_at_our_message():
    envelope = payloads.inbound_message(PHONE, "34600000000", "34611222333", "Ana", msg_type="button",
                                        context="wamid.OURS", payload="SI")
    assert only_message(envelope)[1]["context"] == {"from": "34600000000", "id": "wamid.OURS"}


def test_system_message_has_no_contacts():
    envelope = payloads.inbound_message(PHONE, "34600000000", "34611222333", "Ana", msg_type="system",
                                        body="User changed number", new_wa_id="34622333444")
    value, message = only_message(envelope)
    assert "contacts" not in value
    assert message["system"] == {"body": "User changed number", "type": "user_changed_number",
                                 "wa_id": "34622333444"}


def test_inbound_from_a_username_user_without_phone_number():
    envelope = payloads.inbound_message(PHONE, "34600000000", None, "Ana", bsuid="ES.13491208655302741918",
                                        username="@ana")
    value, message = only_message(envelope)
    assert value["contacts"] == [{"profile": {"name": "Ana", "username": "@ana"}, "user_id": "ES.13491208655302741918"}]
    assert "from" not in message and message["from_user_id"] == "ES.13491208655302741918"


def test_status_updates():
    sent = payloads.status_update(PHONE, "wamid.OUT", "sent", "34611222333", timestamp=1760000000,
                                  category="marketing")
    [status] = sent["entry"][0]["changes"][0]["value"]["statuses"]
    assert status["conversation"]["origin"]["type"] == "marketing"
    assert status["conversation"]["expiration_timestamp"] == "1760086400"
    assert status["pricing"] == {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
    read = payloads.status_update(PHONE, "wamid.OUT", "read", "34611222333")
    assert "pricing" not in read["entry"][0]["changes"][0]["value"]["statuses"][0]
    failed = payloads.status_update(PHONE, "wamid.OUT", "failed", "34611222333", errors=[131047])
    [failure] = failed["entry"][0]["changes"][0]["value"]["statuses"]
    assert failure["errors"][0]["code"] == 131047 and failure["errors"][0]["error_data"]["details"]
    assert "pricing" not in failure
    by_bsuid = payloads.status_update(PHONE, "wamid.OUT", "delivered", None, recipient_user_id="US.1a")
    assert by_bsuid["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_user_id"] == "US.1a"


def test_batched_envelope():
    value = payloads.messages_value(
        PHONE, "34600000000",
        contacts=[payloads.contact_item("34611222333", "Ana")],
        messages=[payloads.message_item("34611222333", body=f"m{number}") for number in range(3)],
        statuses=[payloads.status_item("wamid.OUT", "read", "34611222333")])
    envelope = payloads.envelope(WABA, [payloads.change(value)])
    value = envelope["entry"][0]["changes"][0]["value"]
    assert len(value["messages"]) == 3 and len(value["statuses"]) == 1
    assert len({message["id"] for message in value["messages"]}) == 3


def test_template_status_update():
    envelope = payloads.template_status_update(WABA, "700000000000001", "oferta", "es", "REJECTED",
                                               reason="INVALID_FORMAT")
    change = envelope["entry"][0]["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"] == {"event": "REJECTED", "message_template_id": 700000000000001,
                               "message_template_name": "oferta", "message_template_language": "es",
                               "reason": "INVALID_FORMAT"}


def test_sign():
    body = payloads.dumps({"a": "b/c"})
    assert payloads.sign(body, "secret") == expected_signature(body, "secret")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def test_command_line_serves_until_sigterm(tmp_path):
    config = tmp_path / "accounts.json"
    config.write_text(json.dumps({"accounts": [OTHER], "templates": [{"name": "cli", "language": "es"}]}))
    process = subprocess.Popen([sys.executable, os.path.join(DEVTOOLS, "graph_simulator"), "--port", "0",
                                "--config", str(config)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split("listening on ", 1)[1].strip()
        ControlClient(url).wait_ready()
        with requests.Session() as session:
            session.trust_env = False
            answer = session.get(f"{url}/v26.0/{OTHER['waba_id']}/message_templates", timeout=10,
                                 headers={"Authorization": "Bearer other-token"}).json()
        assert [template["name"] for template in answer["data"]] == ["cli"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        process.stdout.close()


def test_bench_drives_sends(sim):
    from graph_simulator.bench_selftest import drive_sends
    assert drive_sends(sim.url, 100, clients=1) > 0
    assert len(sim.sent()["by_callback"]) == 100
