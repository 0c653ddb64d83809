"""Meta webhook payloads, built the way the Cloud API sends them. Pure functions.

`inbound_message`, `status_update` and `template_status_update` return whole envelopes ready to
post; `message_item`, `contact_item`, `status_item`, `messages_value`, `change` and `envelope` are the parts,
for batching several messages or statuses into one POST as Meta does.
"""
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time

DEFAULT_PHONE_NUMBER_ID = "100000000000001"
DEFAULT_WABA_ID = "200000000000001"
DEFAULT_DISPLAY_PHONE_NUMBER = "34600000000"
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
DEFAULT_MIME_TYPES = {
    "image": "image/jpeg", "video": "video/mp4", "audio": "audio/ogg; codecs=opus",
    "document": "application/pdf", "sticker": "image/webp",
}
ERROR_TITLES = {
    131000: "Something went wrong",
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
            "messages on WhatsApp from your business.",
    131051: "Message type unknown",
    131053: "Media upload error",
    131062: "Business-scoped user id not supported for this message",
}
_sequence = itertools.count(1)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # ASCII-only, as Meta sends
_run_tag = secrets.token_hex(3).upper()


# --------------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------------
def dumps(payload):
    """The bytes Meta would post: compact JSON, non-ASCII and '/' escaped.

    Receivers must sign-check these exact bytes; a receiver that re-serializes the parsed JSON
    gets different bytes and a failed check, which is the bug this is meant to expose.
    """
    return _COMPACT_JSON.encode(payload).replace("/", "\\/").encode()


def sign(body_bytes, app_secret):
    """The X-Hub-Signature-256 header value for these exact bytes."""
    digest = hmac.new(app_secret.encode(), body_bytes, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def sign_sha1(body_bytes, app_secret):
    """The legacy X-Hub-Signature header Meta still sends beside the SHA-256 one."""
    return "sha1=" + hmac.new(app_secret.encode(), body_bytes, hashlib.sha1).hexdigest()


# --------------------------------------------------------------------------------------------
# Envelope parts
# --------------------------------------------------------------------------------------------
def envelope(waba_id, changes):
    """The outer object; one entry per WABA holding any number of changes."""
    return {"object": "whatsapp_business_account", "entry": [{"id": str(waba_id), "changes": list(changes)}]}


def change(value, field="messages"):
    return {"value": value, "field": field}


def messages_value(phone_number_id, display_phone_number, contacts=(), messages=(), statuses=(), errors=()):
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": _digits(display_phone_number),
                     "phone_number_id": str(phone_number_id)},
    }
    for key, items in (("contacts", contacts), ("messages", messages), ("statuses", statuses), ("errors", errors)):
        if items:
            value[key] = list(items)
    return value


def contact_item(wa_id, profile_name, bsuid=None, username=None):
    """A `contacts` item; wa_id may be None for a username user who hides the phone number."""
    profile = {"name": profile_name}
    if username:
        profile["username"] = username
    item = {"profile": profile}
    if wa_id:
        item["wa_id"] = _digits(wa_id)
    if bsuid:
        item["user_id"] = bsuid
    return item


def new_wamid():
    raw = f"SIM{_run_tag}{next(_sequence):010d}".encode()
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x12\x18\x14" + raw).decode()


def timestamp_text(timestamp=None):
    return str(int(timestamp if timestamp is not None else time.time()))


# --------------------------------------------------------------------------------------------
# Inbound messages
# --------------------------------------------------------------------------------------------
def message_item(wa_id, msg_type="text", body="Hola, me interesa el piso", wamid=None, timestamp=None,
                 bsuid=None, context=None, **type_fields):
    """One item of `messages`; see inbound_message for the type fields."""
    context_from = type_fields.pop("context_from", None)
    item = {}
    if wa_id:
        item["from"] = _digits(wa_id)
    if bsuid:
        item["from_user_id"] = bsuid
    item.update(id=wamid or new_wamid(), timestamp=timestamp_text(timestamp), type=msg_type)
    if context is None and msg_type in ("button", "interactive"):
        context = new_wamid()  # replies to buttons always quote the business message
    if context is not None:
        item["context"] = _context(context, context_from)
    builder = _TYPE_BUILDERS.get(msg_type)
    if builder is None:
        raise ValueError(f"unknown inbound message type {msg_type!r}")
    item.update(builder(msg_type, body, type_fields))
    return item


def inbound_message(phone_number_id, display_phone_number, wa_id, profile_name, msg_type="text",
                    body="Hola, me interesa el piso", wamid=None, timestamp=None, bsuid=None,
                    waba_id=DEFAULT_WABA_ID, username=None, **type_fields):
    """A whole webhook envelope carrying one message from a user.

    wa_id may be None when bsuid is given (a username user whose phone number is hidden).
    `system` messages carry no contacts array, as at Meta. Type fields (all optional):
      any type: context (the wamid replied to, or a {"from", "id"} dict)
      image, video, audio, document, sticker: media_id, mime_type, sha256, caption,
        filename (document), voice (audio), animated (sticker)
      location: latitude, longitude, name, address, url     contacts: contacts (vCard-like list)
      interactive: interactive_type (button_reply, list_reply, nfm_reply), reply_id, title,
        description, response_json
      button (template quick reply): payload, text           reaction: message_id, emoji
      order: catalog_id, product_items (body: the order text)
      system: system_type, new_wa_id, new_user_id (body: the notice)
      unsupported: error_code, details, unsupported_type
    """
    type_fields.setdefault("context_from", display_phone_number)
    item = message_item(wa_id, msg_type, body, wamid, timestamp, bsuid, **type_fields)
    contacts = [] if msg_type == "system" else [contact_item(wa_id, profile_name, bsuid, username)]
    value = messages_value(phone_number_id, display_phone_number, contacts=contacts, messages=[item])
    return envelope(waba_id, [change(value)])


def _context(context, context_from=None):
    if isinstance(context, dict):
        return dict(context)
    return {"from": _digits(context_from or DEFAULT_DISPLAY_PHONE_NUMBER), "id": context}


def _text(_msg_type, body, _fields):
    return {"text": {"body": body}}


def _media(msg_type, body, fields):
    media = {
        "id": str(fields.get("media_id") or _numeric_id()),
        "mime_type": fields.get("mime_type", DEFAULT_MIME_TYPES[msg_type]),
        # Webhooks carry the hash base64-encoded; GET /{media-id} gives it in hex.
        "sha256": fields.get("sha256") or base64.b64encode(hashlib.sha256(str(body).encode()).digest()).decode(),
    }
    if fields.get("caption") and msg_type in ("image", "video", "document"):
        media["caption"] = fields["caption"]
    if msg_type == "document":
        media["filename"] = fields.get("filename", "ficha.pdf")
    if msg_type == "audio":
        media["voice"] = bool(fields.get("voice", False))
    if msg_type == "sticker":
        media["animated"] = bool(fields.get("animated", False))
    return {msg_type: media}


def _location(_msg_type, _body, fields):
    location = {"latitude": fields.get("latitude", 40.4168), "longitude": fields.get("longitude", -3.7038)}
    for key in ("name", "address", "url"):
        if fields.get(key):
            location[key] = fields[key]
    return {"location": location}


def _contacts(_msg_type, _body, fields):
    cards = fields.get("contacts") or [{
        "name": {"formatted_name": "Ana García", "first_name": "Ana", "last_name": "García"},
        "phones": [{"phone": "+34 611 222 333", "wa_id": "34611222333", "type": "CELL"}],
    }]
    return {"contacts": cards}


def _interactive(_msg_type, body, fields):
    reply_type = fields.get("interactive_type", "button_reply")
    if reply_type == "nfm_reply":
        reply = {"name": "flow", "body": "Sent", "response_json": fields.get("response_json", "{}")}
    else:
        reply = {"id": fields.get("reply_id", "btn_yes"), "title": fields.get("title", body[:20])}
        if reply_type == "list_reply":
            reply["description"] = fields.get("description", "")
    return {"interactive": {"type": reply_type, reply_type: reply}}


def _button(_msg_type, body, fields):
    return {"button": {"payload": fields.get("payload", body), "text": fields.get("text", body)}}


def _reaction(_msg_type, _body, fields):
    reaction = {"message_id": fields.get("message_id") or new_wamid(), "emoji": fields.get("emoji", "\U0001F44D")}
    return {"reaction": reaction}


def _order(_msg_type, body, fields):
    items = fields.get("product_items") or [
        {"product_retailer_id": "sku-1", "quantity": "1", "item_price": "250000", "currency": "EUR"}]
    return {"order": {"catalog_id": fields.get("catalog_id", "400000000000001"), "text": body,
                      "product_items": items}}


def _system(_msg_type, body, fields):
    system = {"body": body, "type": fields.get("system_type", "user_changed_number")}
    if fields.get("new_wa_id"):
        system["wa_id"] = _digits(fields["new_wa_id"])
    if fields.get("new_user_id"):
        system["user_id"] = fields["new_user_id"]
    return {"system": system}


def _unsupported(_msg_type, _body, fields):
    code = fields.get("error_code", 131051)
    return {
        "errors": [_error(code, fields.get("details", "Message type is currently not supported."))],
        "unsupported": {"type": fields.get("unsupported_type", "unknown")},
    }


_TYPE_BUILDERS = {
    "text": _text, "location": _location, "contacts": _contacts, "interactive": _interactive,
    "button": _button, "reaction": _reaction, "order": _order, "system": _system,
    "unsupported": _unsupported, **{media_type: _media for media_type in MEDIA_TYPES},
}


# --------------------------------------------------------------------------------------------
# Statuses and template updates
# --------------------------------------------------------------------------------------------
def status_item(wamid, status_name, recipient_id, timestamp=None, errors=None, pricing=True,
           category="service", recipient_user_id=None, biz_opaque_callback_data=None):
    """One item of `statuses`.

    errors: a list of Meta error objects, or error codes (ints) expanded with their titles.
    pricing: True for the usual billing objects on sent/delivered (not on read or failed).
    """
    item = {"id": wamid, "status": status_name, "timestamp": timestamp_text(timestamp)}
    if recipient_id:
        item["recipient_id"] = _digits(recipient_id)
    if recipient_user_id:
        item["recipient_user_id"] = recipient_user_id
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    if pricing and status_name in ("sent", "delivered"):
        item.update(_billing(wamid, category, status_name, timestamp))
    if status_name == "failed":
        item["errors"] = [_error(code) if isinstance(code, int) else code for code in errors or [131026]]
    return item


def status_update(phone_number_id, wamid, status, recipient_id, timestamp=None, errors=None, pricing=True,
                  display_phone_number=DEFAULT_DISPLAY_PHONE_NUMBER, waba_id=DEFAULT_WABA_ID,
                  category="service", recipient_user_id=None, biz_opaque_callback_data=None):
    """A whole webhook envelope carrying one status of an outbound message."""
    item = status_item(wamid, status, recipient_id, timestamp, errors, pricing, category,
                       recipient_user_id, biz_opaque_callback_data)
    value = messages_value(phone_number_id, display_phone_number, statuses=[item])
    return envelope(waba_id, [change(value)])


def template_status_update(waba_id, template_id, template_name, language, event, reason=None,
                           timestamp=None):
    """A `message_template_status_update` change: APPROVED, REJECTED, PAUSED, DISABLED..."""
    value = {
        "event": event,
        "message_template_id": int(template_id) if str(template_id).isdigit() else template_id,
        "message_template_name": template_name,
        "message_template_language": language,
        "reason": reason or ("NONE" if event == "APPROVED" else None),
    }
    if event == "DISABLED":
        value["disable_info"] = {"disable_date": timestamp_text(timestamp)}
    entry = envelope(waba_id, [change(value, field="message_template_status_update")])
    entry["entry"][0]["time"] = int(timestamp_text(timestamp))
    return entry


def _billing(wamid, category, status_name, timestamp):
    conversation = {"id": hashlib.md5(wamid.encode()).hexdigest(), "origin": {"type": category}}
    if status_name == "sent":
        conversation["expiration_timestamp"] = timestamp_text((timestamp or time.time()) + 86400)
    pricing = {"billable": category != "service", "pricing_model": "PMP", "category": category,
               "type": "regular" if category != "service" else "free_customer_service"}
    return {"conversation": conversation, "pricing": pricing}


def _error(code, details=None):
    title = ERROR_TITLES.get(code, "Something went wrong")
    return {"code": code, "title": title, "message": title,
            "error_data": {"details": details or title}}


def _digits(phone):
    return "".join(char for char in str(phone) if char.isdigit())


def _numeric_id():
    return str(800_000_000_000_000 + next(_sequence))
