"""The Graph API client: error mapping and payload builders (pure), then real HTTP against
the Graph API simulator."""
import base64
import hashlib
import json

import pytest

from .. import const
from ..tools import graph_api, graph_errors, graph_payloads, graph_transport
from ..tools.graph_api import GraphApiClient
from ..tools.graph_errors import (
    AccountRestrictedError, AuthError, GraphApiError, GraphPermissionError,
    InvalidParameterError, MarketingOptOutError, MediaError, RecipientError, RetryableError,
    TemplateError, WindowClosedError, WithheldError,
)
from . import unit_cases
from .sim_fixtures import (
    FIXTURES, MAIN_ACCOUNT, OTHER_ACCOUNT, sim_control, sim_faults, sim_last_json, sim_requests,
)

TO = "34611222333"
BSUID = "ES.13491208655302741918"


def meta_error(code, message="(#%s) Something", subcode=None, details=None, **extra):
    error = {"message": message % code if "%s" in message else message, "type": "OAuthException",
             "code": code, "fbtrace_id": "AbCdEf", **extra}
    if subcode:
        error["error_subcode"] = subcode
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return json.dumps({"error": error}).encode()


# ---------------------------------------------------------------------------
# Error mapping
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("code, error_class", [
    (4, RetryableError), (80007, RetryableError), (130429, RetryableError),
    (131056, RetryableError), (131000, RetryableError), (131016, RetryableError),
    (131057, RetryableError), (131047, WindowClosedError), (131026, RecipientError),
    (131062, RecipientError), (100, InvalidParameterError), (131008, InvalidParameterError),
    (131009, InvalidParameterError), (132000, TemplateError), (132001, TemplateError),
    (132005, TemplateError), (132007, TemplateError), (132012, TemplateError),
    (132015, TemplateError), (132016, TemplateError), (190, AuthError),
    (10, GraphPermissionError), (200, GraphPermissionError), (294, GraphPermissionError),
    (368, AccountRestrictedError), (131031, AccountRestrictedError),
    (131050, MarketingOptOutError), (131049, WithheldError), (131052, MediaError),
    (131053, MediaError), (987654, GraphApiError),
])
def test_error_codes_map_to_typed_errors(code, error_class):
    err = graph_errors.error_from_response(400, {}, meta_error(code))
    assert type(err) is error_class
    assert err.code == code
    assert err.category == const.ERROR_CODE_CATEGORY.get(code, const.ERROR_UNKNOWN)


def test_error_fields_are_parsed():
    body = meta_error(131047, message="Re-engagement message", subcode=2494010,
                      details="Message failed to send because more than 24 hours have passed",
                      error_user_title="Outside window")
    err = graph_errors.error_from_response(400, {"Content-Type": "application/json"}, body)
    assert (err.http_status, err.code, err.subcode, err.fbtrace_id) == (400, 131047, 2494010, "AbCdEf")
    assert err.title == "Outside window"
    assert err.message == "Re-engagement message"
    assert err.details.startswith("Message failed to send")
    assert not err.retryable and not err.blocks_account
    assert "131047" in str(err) and "more than 24 hours" in str(err)


def test_error_from_payload_maps_status_webhook_errors():
    err = graph_errors.error_from_payload({
        "code": 131050, "title": "Unable to deliver message",
        "message": "Unable to deliver message", "error_data": {"details": "User opted out"},
    })
    assert isinstance(err, MarketingOptOutError)
    assert err.http_status is None and err.details == "User opted out"


@pytest.mark.parametrize("details, error_class", [
    ("Invalid parameter 'to'", RecipientError),
    ("The parameter to is not a valid phone number", RecipientError),
    ("Recipient phone number not in allowed list", RecipientError),
    ("Param text['body'] must be at most 4096 characters", InvalidParameterError),
    ("Unexpected key \"foo\" on param \"template\"", InvalidParameterError),
])
def test_code_100_is_a_recipient_error_only_when_it_names_the_recipient(details, error_class):
    err = graph_errors.error_from_response(400, {}, meta_error(100, "(#100) Invalid parameter", details=details))
    assert type(err) is error_class


def test_http_status_decides_without_an_error_code():
    assert isinstance(graph_errors.error_from_response(401, {}, b""), AuthError)
    assert isinstance(graph_errors.error_from_response(403, {}, b"Forbidden"), GraphPermissionError)
    assert isinstance(graph_errors.error_from_response(429, {}, None), RetryableError)
    assert isinstance(graph_errors.error_from_response(503, {}, b"{}"), RetryableError)
    assert type(graph_errors.error_from_response(404, {}, b"nope")) is GraphApiError


def test_401_is_auth_even_with_another_code():
    err = graph_errors.error_from_response(401, {}, meta_error(100))
    assert isinstance(err, AuthError) and err.blocks_account


def test_html_error_page_maps_cleanly():
    page = (b"<!DOCTYPE html><html><head><title>Error</title><style>body{color:red}</style></head>"
            b"<body><h1>502 Bad Gateway</h1><p>The server is taking a nap.</p></body></html>")
    err = graph_errors.error_from_response(502, {"Content-Type": "text/html"}, page)
    assert isinstance(err, RetryableError) and err.retryable
    assert err.message == "HTTP 502 Bad Gateway"
    assert "<" not in err.details and "color:red" not in err.details
    assert "taking a nap" in err.details
    assert err.code is None


def test_non_json_and_broken_bodies_map_cleanly():
    err = graph_errors.error_from_response(400, {}, b"\xff\xfe not json {")
    assert type(err) is GraphApiError and err.http_status == 400
    err = graph_errors.error_from_response(500, {}, b'{"error": "flat string"}')
    assert isinstance(err, RetryableError)
    err = graph_errors.error_from_response(400, {}, {"error": {"code": "131047", "message": "x"}})
    assert isinstance(err, WindowClosedError) and err.code == 131047


@pytest.mark.parametrize("header, expected", [("7", 7), ("1.5", 1.5), ("-3", 0), ("soon", None)])
def test_retry_after_header(header, expected):
    err = graph_errors.error_from_response(429, {"retry-after": header}, meta_error(130429))
    assert err.retry_after == expected


def test_retry_after_http_date():
    err = graph_errors.error_from_response(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"")
    assert err.retry_after == 0


def test_redact_removes_the_token():
    err = GraphApiError("bad token abc123", details="token abc123 was rejected", title="abc123")
    err.redact("abc123")
    assert "abc123" not in str(err) and "abc123" not in repr(err.args) and "abc123" not in err.title


def test_retry_delay_backs_off_and_honours_retry_after():
    assert graph_errors.retry_delay(1) == const.RETRY_BACKOFF_BASE
    assert graph_errors.retry_delay(2) == const.RETRY_BACKOFF_BASE * const.RETRY_BACKOFF_FACTOR
    assert graph_errors.retry_delay(50) == const.RETRY_BACKOFF_MAX
    assert graph_errors.retry_delay(1, retry_after=60) == 60


# ---------------------------------------------------------------------------
# Constants and versions
# ---------------------------------------------------------------------------
def test_error_code_tables_do_not_overlap():
    tables = [const.RETRYABLE_ERROR_CODES, const.WINDOW_CLOSED_ERROR_CODES, const.RECIPIENT_ERROR_CODES,
              const.INVALID_PARAMETER_ERROR_CODES, const.TEMPLATE_ERROR_CODES, const.AUTH_ERROR_CODES,
              const.PERMISSION_ERROR_CODES, const.ACCOUNT_RESTRICTED_ERROR_CODES,
              const.MARKETING_OPT_OUT_ERROR_CODES, const.WITHHELD_ERROR_CODES, const.MEDIA_ERROR_CODES]
    assert sum(len(table) for table in tables) == len(const.ERROR_CODE_CATEGORY)


def test_states_only_move_forward():
    ranks = [const.STATE_RANK[s] for s in ("queued", "sending", "sent", "delivered", "read")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5
    assert const.META_STATUS_TO_STATE == {
        "sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
    assert const.STATE_FAILED not in const.STATE_RANK
    assert const.STATE_DELIVERED not in const.FAILED_ALLOWED_FROM
    assert const.STATE_SENT in const.FAILED_ALLOWED_FROM


@pytest.mark.parametrize("version, status", [
    ("v17.0", const.API_VERSION_EXPIRED), ("v20.0", const.API_VERSION_EXPIRED),
    ("v21.0", const.API_VERSION_EXPIRING), ("v22.0", const.API_VERSION_EXPIRING),
    ("v23.0", const.API_VERSION_SUPPORTED), ("v25.0", const.API_VERSION_SUPPORTED),
    ("26.0", const.API_VERSION_SUPPORTED), ("v30.0", const.API_VERSION_SUPPORTED),
    ("latest", const.API_VERSION_INVALID), ("", const.API_VERSION_INVALID),
])
def test_api_version_status(version, status):
    assert graph_api.api_version_status(version) == status


def test_defaults():
    assert const.DEFAULT_GRAPH_API_URL == "https://graph.facebook.com"
    assert const.DEFAULT_GRAPH_API_VERSION == "v25.0"
    assert graph_api.api_version_status(const.DEFAULT_GRAPH_API_VERSION) == const.API_VERSION_SUPPORTED
    assert (const.DEFAULT_THROUGHPUT_MPS, const.PAIR_RATE_LIMIT_SECONDS) == (80, 6)
    client = GraphApiClient("123", "tok", api_version="25", api_url="https://graph.facebook.com/")
    assert (client.api_url, client.api_version) == ("https://graph.facebook.com", "v25.0")
    assert "tok" not in repr(client)
    with pytest.raises(ValueError):
        GraphApiClient("123", "tok", api_version="latest")


# ---------------------------------------------------------------------------
# Payload builders
# ---------------------------------------------------------------------------
def envelope(msg_type, content, **extra):
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO,
            "type": msg_type, msg_type: content, **extra}


def test_text_payload():
    assert graph_payloads.build_text_payload("+34 611-222 333", "Hola") == envelope(
        "text", {"preview_url": False, "body": "Hola"})
    payload = graph_payloads.build_text_payload(TO, "https://strato.es", preview_url=True,
                                           reply_to="wamid.IN1", callback_data=42)
    assert payload == envelope("text", {"preview_url": True, "body": "https://strato.es"},
                               context={"message_id": "wamid.IN1"}, biz_opaque_callback_data="42")


def test_bsuid_recipient_replaces_to():
    payload = graph_payloads.build_text_payload(None, "Hola", bsuid=BSUID)
    assert payload["recipient"] == BSUID and "to" not in payload
    assert payload["recipient_type"] == "individual"
    # Meta gives a phone number precedence; we send only that one.
    assert graph_payloads.recipient_fields(TO, BSUID) == {"to": TO}
    with pytest.raises(ValueError):
        graph_payloads.build_text_payload("", "Hola")


def test_template_payload():
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]
    assert graph_payloads.build_template_payload(TO, "visit_reminder", "es", components) == envelope(
        "template", {"name": "visit_reminder", "language": {"code": "es"}, "components": components})
    assert graph_payloads.build_template_payload(TO, "hello", {"code": "en_US"})["template"] == {
        "name": "hello", "language": {"code": "en_US"}}


def test_media_payloads():
    assert graph_payloads.build_media_payload(TO, "image", media_id="77", caption="Salón") == envelope(
        "image", {"id": "77", "caption": "Salón"})
    assert graph_payloads.build_media_payload(
        TO, "document", link="https://x.es/plano.pdf", caption="Plano", filename="plano.pdf",
    ) == envelope("document", {"link": "https://x.es/plano.pdf", "caption": "Plano", "filename": "plano.pdf"})
    assert graph_payloads.build_media_payload(TO, "audio", media_id="9") == envelope("audio", {"id": "9"})
    assert graph_payloads.build_media_payload(TO, "sticker", media_id="8")["sticker"] == {"id": "8"}
    assert graph_payloads.build_media_payload(TO, "video", media_id="6", caption="Tour")["video"] == {
        "id": "6", "caption": "Tour"}


@pytest.mark.parametrize("kwargs", [
    {"media_type": "gif", "media_id": "1"},
    {"media_type": "image"},
    {"media_type": "image", "media_id": "1", "link": "https://x"},
    {"media_type": "audio", "media_id": "1", "caption": "no"},
])
def test_media_payload_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        graph_payloads.build_media_payload(TO, **kwargs)


def test_location_contacts_reaction_payloads():
    assert graph_payloads.build_location_payload(TO, "40.4168", -3.7038, name="Piso Sol", address="Puerta del Sol 1") \
        == envelope("location", {"latitude": 40.4168, "longitude": -3.7038, "name": "Piso Sol",
                                 "address": "Puerta del Sol 1"})
    card = {"name": {"formatted_name": "Ana Ruiz", "first_name": "Ana"}, "phones": [{"phone": "+34600"}]}
    assert graph_payloads.build_contacts_payload(TO, [card]) == envelope("contacts", [card])
    assert graph_payloads.build_reaction_payload(TO, "wamid.IN1", "👍") == envelope(
        "reaction", {"message_id": "wamid.IN1", "emoji": "👍"})
    assert graph_payloads.build_reaction_payload(TO, "wamid.IN1", None)["reaction"]["emoji"] == ""


def test_interactive_buttons_payload():
    payload = graph_payloads.build_interactive_buttons_payload(
        TO, "¿Visitamos el piso?", [("yes", "Sí"), ("no", "No")], header="Visita", footer="Strato")
    assert payload == envelope("interactive", {
        "type": "button",
        "header": {"type": "text", "text": "Visita"},
        "body": {"text": "¿Visitamos el piso?"},
        "footer": {"text": "Strato"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Sí"}},
                               {"type": "reply", "reply": {"id": "no", "title": "No"}}]},
    })
    image_header = {"type": "image", "image": {"id": "55"}}
    assert graph_payloads.build_interactive_buttons_payload(
        TO, "b", [("a", "A")], header=image_header)["interactive"]["header"] == image_header


@pytest.mark.parametrize("buttons", [
    [], [("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")], [("1", "x" * 21)], [("1", "a"), ("1", "b")],
])
def test_interactive_buttons_limits(buttons):
    with pytest.raises(ValueError):
        graph_payloads.build_interactive_buttons_payload(TO, "body", buttons)


def test_interactive_list_payload():
    payload = graph_payloads.build_interactive_list_payload(
        TO, "Elige un horario", "Horarios",
        [{"title": "Mañana", "rows": [("m10", "10:00", "Primera hora"), {"id": "m12", "title": "12:00"}]},
         {"title": "Tarde", "rows": [("t17", "17:00")]}],
        footer="Strato",
    )
    assert payload["interactive"] == {
        "type": "list",
        "body": {"text": "Elige un horario"},
        "footer": {"text": "Strato"},
        "action": {"button": "Horarios", "sections": [
            {"title": "Mañana", "rows": [{"id": "m10", "title": "10:00", "description": "Primera hora"},
                                          {"id": "m12", "title": "12:00"}]},
            {"title": "Tarde", "rows": [{"id": "t17", "title": "17:00"}]},
        ]},
    }


@pytest.mark.parametrize("sections", [
    [],
    [{"rows": [(str(i), f"row {i}") for i in range(11)]}],
    [{"rows": [("a", "A")]}, {"rows": [("b", "B")]}],  # several sections need titles
    [{"title": "t", "rows": [("a", "x" * 25)]}],
])
def test_interactive_list_limits(sections):
    with pytest.raises(ValueError):
        graph_payloads.build_interactive_list_payload(TO, "body", "Ver", sections)


def test_read_payload():
    assert graph_payloads.build_read_payload("wamid.IN1") == {
        "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1"}
    assert graph_payloads.build_read_payload("wamid.IN1", typing_indicator=True)["typing_indicator"] == {"type": "text"}


# ---------------------------------------------------------------------------
# The transport seam (no network)
# ---------------------------------------------------------------------------
class FakeTransport:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def fake_client(*answers):
    client = GraphApiClient("111", "secret-token", waba_id="222")
    client._request = FakeTransport(*answers)
    return client


def test_send_goes_through_the_seam():
    client = fake_client({"messages": [{"id": "wamid.OUT"}], "contacts": [{"input": TO, "wa_id": TO}]})
    result = client.send_text(TO, "Hola", callback_data="msg-7")
    assert graph_payloads.extract_wamid(result) == "wamid.OUT"
    method, path, kwargs = client._request.calls[0]
    assert (method, path) == ("POST", "111/messages")
    assert kwargs["json"]["biz_opaque_callback_data"] == "msg-7"


def test_send_without_wamid_is_a_bad_response():
    client = fake_client({"messages": []})
    with pytest.raises(GraphApiError) as info:
        client.send_text(TO, "Hola")
    assert info.value.category == const.ERROR_BAD_RESPONSE and not info.value.retryable


def test_template_paging_follows_after_cursor_until_no_next():
    client = fake_client(
        {"data": [{"name": "a"}], "paging": {"cursors": {"after": "C1"}, "next": "https://g/next?after=C1"}},
        {"data": [{"name": "b"}], "paging": {"next": "https://g/next?access_token=x&after=C2"}},
        {"data": [{"name": "c"}], "paging": {"cursors": {"after": "C3"}}},
    )
    assert [t["name"] for t in client.list_templates(limit=1)] == ["a", "b", "c"]
    params = [kwargs["params"] for _m, _p, kwargs in client._request.calls]
    assert [p.get("after") for p in params] == [None, "C1", "C2"]
    assert {p["limit"] for p in params} == {1}


def test_template_paging_stops_on_a_repeated_cursor():
    page = {"data": [{"name": "a"}], "paging": {"cursors": {"after": "SAME"}, "next": "n"}}
    client = fake_client(page, page, page)
    assert len(client.list_templates()) == 2


def test_sessions_are_pooled_per_number_and_token():
    first = graph_transport.pooled_session("https://g", "1", "tok")
    assert graph_transport.pooled_session("https://g", "1", "tok") is first
    assert graph_transport.pooled_session("https://g", "1", "other") is not first
    assert graph_transport.pooled_session("https://g", "2", "tok") is not first
    assert all(key[2] != "tok" and len(key[2]) == 64 for key in graph_transport._sessions)



def test_lean_transport_refuses_real_hosts_while_tests_run():
    """Odoo's test guard patches ``requests`` only: the lean transport keeps the same rule itself."""
    client = GraphApiClient("1", "tok", api_url="https://graph.facebook.com", timeout=(0.5, 0.5))
    before = dict(getattr(graph_transport._connections, "pool", None) or {})
    with pytest.raises(graph_transport.ExternalCallInTestsError):
        client.send_text("34600000001", "hola")
    assert (getattr(graph_transport._connections, "pool", None) or {}) == before, "no connection was opened"


# ---------------------------------------------------------------------------
# Raw HTTP answers the simulator never gives
# ---------------------------------------------------------------------------
def raw_client(server):
    return GraphApiClient("111", "secret-token", api_url=server.url, timeout=(2, 5))


def test_2xx_with_invalid_json_is_an_error_not_a_crash(raw_server):
    raw_server.canned = (200, {"Content-Type": "application/json"}, b"{not json")
    with pytest.raises(GraphApiError) as info:
        raw_client(raw_server).get_phone_number_info()
    assert info.value.category == const.ERROR_BAD_RESPONSE and info.value.http_status == 200


def test_html_gateway_page_over_http(raw_server):
    raw_server.canned = (503, {"Content-Type": "text/html", "Retry-After": "3"},
                         b"<html><body><h1>Service Unavailable</h1></body></html>")
    with pytest.raises(RetryableError) as info:
        raw_client(raw_server).send_text(TO, "Hola")
    assert info.value.http_status == 503 and info.value.retry_after == 3
    assert info.value.details == "Service Unavailable"


def test_error_text_never_contains_the_token(raw_server):
    body = meta_error(190, "Invalid OAuth access token: secret-token", details="token secret-token expired")
    raw_server.canned = (401, {"Content-Type": "application/json"}, body)
    with pytest.raises(AuthError) as info:
        raw_client(raw_server).send_text(TO, "Hola")
    assert "secret-token" not in str(info.value) and "secret-token" not in repr(info.value)
    assert "secret-token" not in (info.value.details or "")


def test_download_refuses_plain_http_to_another_host(raw_server):
    client = GraphApiClient("111", "secret-token", api_url="https://graph.facebook.com")
    with pytest.raises(MediaError):
        client.download_media(raw_server.url + "/media")


# ---------------------------------------------------------------------------
# Against the Graph API simulator
# ---------------------------------------------------------------------------
def assert_accepted(sim, result, payload):
    """The simulator accepted the send and recorded exactly ``payload``."""
    assert graph_payloads.extract_wamid(result).startswith("wamid.")
    assert sim_last_json(sim, "/messages") == payload
    assert sim_requests(sim, "/messages")[-1]["headers"]["authorization"] == "Bearer sim-token"


def test_sim_phone_number_info(sim_client):
    info = sim_client.get_phone_number_info()
    assert info["id"] == MAIN_ACCOUNT["phone_number_id"]
    assert info["verified_name"] == MAIN_ACCOUNT["verified_name"]
    assert info["quality_rating"] == "GREEN"


SEND_CASES = [
    ("send_text", dict(to=TO, body="Hola Ana"), "build_text_payload"),
    ("send_template", dict(to=TO, name="hello_world", language="en_US",
                           components=[{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]),
     "build_template_payload"),
    ("send_media", dict(to=TO, media_type="image", media_id="123", caption="Salón"), "build_media_payload"),
    ("send_media", dict(to=TO, media_type="video", link="https://strato.es/tour.mp4"), "build_media_payload"),
    ("send_media", dict(to=TO, media_type="audio", media_id="124"), "build_media_payload"),
    ("send_media", dict(to=TO, media_type="document", media_id="125", filename="plano.pdf", caption="Plano"),
     "build_media_payload"),
    ("send_media", dict(to=TO, media_type="sticker", media_id="126"), "build_media_payload"),
    ("send_location", dict(to=TO, latitude=40.4168, longitude=-3.7038, name="Piso Sol"), "build_location_payload"),
    ("send_contacts", dict(to=TO, contacts=[{"name": {"formatted_name": "Ana"}, "phones": [{"phone": "+34600"}]}]),
     "build_contacts_payload"),
    ("send_reaction", dict(to=TO, message_id="wamid.IN1", emoji="👍"), "build_reaction_payload"),
    ("send_interactive_buttons", dict(to=TO, body="¿Visita?", buttons=[("y", "Sí"), ("n", "No")], footer="Strato"),
     "build_interactive_buttons_payload"),
    ("send_interactive_list", dict(to=TO, body="Horario", button="Ver",
                                   sections=[{"title": "Mañana", "rows": [("m10", "10:00")]}]),
     "build_interactive_list_payload"),
]


@pytest.mark.parametrize("method, kwargs, builder", SEND_CASES,
                         ids=[f"{m}-{k.get('media_type', '')}" for m, k, _b in SEND_CASES])
def test_sim_accepts_every_send_kind(sim, sim_client, method, kwargs, builder):
    result = getattr(sim_client, method)(**kwargs)
    assert_accepted(sim, result, getattr(graph_api, builder)(**kwargs))
    assert result["contacts"][0]["input"] == TO
    if method == "send_template":
        assert result["messages"][0]["message_status"] == "accepted"


def test_sim_connections_are_kept_alive(sim, sim_client):
    sim_client.get_phone_number_info()
    session = graph_transport.pooled_session(sim_client.api_url, sim_client.phone_number_id, "sim-token")
    pool = session.get_adapter(sim.url).poolmanager.connection_from_url(sim.url)
    opened = pool.num_connections
    for n in range(5):
        sim_client.send_text(TO, f"Mensaje {n}")
    assert pool.num_connections == opened


def test_sim_bsuid_recipient(sim, sim_client):
    result = sim_client.send_text(None, "Hola", bsuid=BSUID)
    recorded = sim_last_json(sim)
    assert recorded["recipient"] == BSUID and "to" not in recorded
    assert graph_payloads.extract_wamid(result)


def test_sim_reply_context_and_callback_data(sim, sim_client):
    sim_client.send_text(TO, "Claro", reply_to="wamid.IN1", callback_data="msg-41")
    sim_client.send_text(TO, "Te espero", callback_data="msg-42")
    assert sim_last_json(sim, "/messages") == graph_payloads.build_text_payload(TO, "Te espero", callback_data="msg-42")
    assert sim_requests(sim, "/messages")[0]["json"]["context"] == {"message_id": "wamid.IN1"}
    sent = sim_control(sim, "GET", "/_sim/sent")
    assert sent["by_callback"] == {"msg-41": 1, "msg-42": 1}


def test_sim_mark_as_read_with_typing(sim, sim_client):
    assert sim_client.mark_as_read("wamid.IN1", typing_indicator=True) == {"success": True}
    assert sim_last_json(sim) == {"messaging_product": "whatsapp", "status": "read",
                                  "message_id": "wamid.IN1", "typing_indicator": {"type": "text"}}


def test_sim_invalid_payload_is_invalid_parameter(sim_client):
    with pytest.raises(InvalidParameterError) as info:
        sim_client.send_message({"to": TO, "type": "text", "text": {"body": ""}})
    assert info.value.code == 100 and info.value.http_status == 400 and not info.value.retryable


def test_sim_bad_token_is_auth_error(sim):
    client = GraphApiClient(MAIN_ACCOUNT["phone_number_id"], "wrong-token", api_url=sim.url)
    with pytest.raises(AuthError) as info:
        client.send_text(TO, "Hola")
    assert info.value.http_status == 401 and info.value.code == 190 and info.value.blocks_account
    assert "wrong-token" not in str(info.value)


def test_sim_other_accounts_token_is_permission_error(sim):
    client = GraphApiClient(MAIN_ACCOUNT["phone_number_id"], OTHER_ACCOUNT["access_token"], api_url=sim.url)
    with pytest.raises(GraphPermissionError) as info:
        client.send_text(TO, "Hola")
    assert info.value.http_status == 403 and info.value.blocks_account


def test_sim_429_with_retry_after(sim, sim_client):
    sim_faults(sim, {"path_contains": "/messages", "kind": "http", "status": 429, "code": 130429,
                     "message": "(#130429) Rate limit hit", "retry_after": 2, "count": 1})
    with pytest.raises(RetryableError) as info:
        sim_client.send_text(TO, "Hola")
    assert info.value.retry_after == 2 and info.value.code == 130429 and info.value.http_status == 429
    assert graph_errors.retry_delay(1, info.value.retry_after) >= 2
    assert graph_payloads.extract_wamid(sim_client.send_text(TO, "Hola"))  # count=1: next one passes


@pytest.mark.parametrize("status, code, error_class", [
    (500, 131000, RetryableError), (400, 131047, WindowClosedError), (400, 131026, RecipientError),
    (400, 131050, MarketingOptOutError), (400, 132001, TemplateError), (400, 131056, RetryableError),
])
def test_sim_injected_errors(sim, sim_client, status, code, error_class):
    sim_faults(sim, {"path_contains": "/messages", "kind": "http", "status": status, "code": code,
                     "message": "sim-token leaked?"})
    with pytest.raises(error_class) as info:
        sim_client.send_text(TO, "Hola")
    assert (info.value.http_status, info.value.code) == (status, code)
    assert "sim-token" not in str(info.value)


def test_sim_dropped_connection_is_retryable(sim, sim_client):
    sim_faults(sim, {"path_contains": "/messages", "kind": "drop", "count": 1})
    with pytest.raises(RetryableError) as info:
        sim_client.send_text(TO, "Hola")
    assert info.value.http_status is None and info.value.retryable
    assert graph_payloads.extract_wamid(sim_client.send_text(TO, "Hola"))  # the pool recovers


def test_sim_timeout_is_retryable(sim):
    client = GraphApiClient(MAIN_ACCOUNT["phone_number_id"], "sim-token", api_url=sim.url, timeout=(2, 0.3))
    sim_faults(sim, {"path_contains": "/messages", "kind": "timeout", "delay": 1.5, "count": 1})
    with pytest.raises(RetryableError) as info:
        client.send_text(TO, "Hola")
    assert "Timed out" in str(info.value)


def test_sim_media_upload_url_and_download(sim, sim_client):
    content = b"%PDF-1.4 plano del piso " * 1000
    media_id = sim_client.upload_media(content, "application/pdf", "plano.pdf")["id"]
    upload = sim_requests(sim, "/media")[-1]
    assert upload["method"] == "POST" and upload["headers"]["content-type"].startswith("multipart/form-data")
    info = sim_client.get_media_url(media_id)
    assert info["mime_type"] == "application/pdf"
    assert info["file_size"] == len(content)
    assert info["sha256"] == hashlib.sha256(content).hexdigest()
    assert sim_client.download_media(info["url"], sha256=info["sha256"]) == content
    with pytest.raises(MediaError) as info_err:
        sim_client.download_media(info["url"], max_bytes=len(content) - 1)
    assert not info_err.value.retryable


def test_sim_inbound_media_download(sim, sim_client):
    content = bytes(range(256)) * 300
    media_id = sim_control(sim, "POST", "/_sim/media", {
        "content_b64": base64.b64encode(content).decode(), "mime_type": "image/jpeg"})["id"]
    info = sim_client.get_media_url(media_id)
    assert sim_client.download_media(info["url"], max_bytes=len(content)) == content
    assert sim_requests(sim, "/_media/")[-1]["headers"]["authorization"] == "Bearer sim-token"


def test_sim_unknown_media_is_invalid_parameter(sim_client):
    with pytest.raises(InvalidParameterError):
        sim_client.get_media_url("999999999")


def seed_templates(sim, count):
    sim_control(sim, "DELETE", "/_sim/templates")
    sim_control(sim, "POST", "/_sim/templates", {"waba_id": MAIN_ACCOUNT["waba_id"], "templates": [
        {"name": f"tpl_{i:02d}", "language": "es", "status": "APPROVED", "category": "UTILITY",
         "parameter_format": "POSITIONAL", "components": [{"type": "BODY", "text": f"Hola {{{{1}}}} {i}"}]}
        for i in range(count)
    ]})


def test_sim_template_paging(sim, sim_client):
    seed_templates(sim, 23)
    templates = sim_client.list_templates(limit=10)
    assert sorted(t["name"] for t in templates) == [f"tpl_{i:02d}" for i in range(23)]
    assert len({t["id"] for t in templates}) == 23
    assert len(sim_requests(sim, "/message_templates")) == 3


def test_sim_create_and_edit_template(sim, sim_client):
    seed_templates(sim, 0)
    payload = {"name": "visit_reminder", "language": "es", "category": "UTILITY",
               "parameter_format": "POSITIONAL",
               "components": [{"type": "BODY", "text": "Hola {{1}}, te esperamos mañana.",
                               "example": {"body_text": [["Ana"]]}}]}
    created = sim_client.create_template(payload)
    assert created["status"] == "PENDING" and created["id"]
    assert sim_last_json(sim, "/message_templates") == payload
    assert [t["name"] for t in sim_client.list_templates()] == ["visit_reminder"]
    with pytest.raises(InvalidParameterError) as info:
        sim_client.create_template(payload)
    assert info.value.subcode == 2388024
    edited = {"components": [{"type": "BODY", "text": "Hola {{1}}, te esperamos.",
                              "example": {"body_text": [["Ana"]]}}]}
    assert sim_client.edit_template(created["id"], edited) == {"success": True}


def test_sim_resumable_upload(sim, sim_client):
    handle = sim_client.resumable_upload(None, b"\x89PNG header sample", "image/png", "header.png")
    assert handle
    start, upload = sim_requests(sim, "/upload")[-2:]
    assert start["path"].split("?")[0].endswith(f"{MAIN_ACCOUNT['app_id']}/uploads")
    assert upload["headers"]["authorization"] == "OAuth sim-token"
    assert upload["headers"]["file_offset"] == "0"


def test_lean_transport_reconnects_after_the_server_closed_an_idle_connection():
    """Sends reuse one keep-alive connection; one the server closed meanwhile is replaced, not failed."""
    import socket
    import threading as _threading

    body = b'{"messaging_product":"whatsapp","messages":[{"id":"wamid.KEEPALIVE"}]}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        for _ in range(2):
            conn, _addr = listener.accept()
            accepted.append(conn)
            conn.recv(65536)
            conn.sendall(answer)
            conn.close()  # close the keep-alive connection behind the client's back

    server = _threading.Thread(target=serve, daemon=True)
    server.start()
    client = GraphApiClient("1", "tok", api_url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=(2, 2))
    try:
        assert client.send_text("34600000001", "uno")["messages"][0]["id"] == "wamid.KEEPALIVE"
        server.join(0.2)
        assert client.send_text("34600000001", "dos")["messages"][0]["id"] == "wamid.KEEPALIVE"
        assert len(accepted) == 2, "a second connection replaced the closed one"
    finally:
        graph_transport.close_connections()
        listener.close()


# Odoo's runner and pytest-odoo both run these, as one class (see unit_cases).
TestGraphApiClient = unit_cases.gather("TestGraphApiClient", globals(), fixtures=FIXTURES)
