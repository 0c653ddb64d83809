"""What POST /{phone_number_id}/messages accepts: sends and mark-as-read requests."""
import re

from .errors import invalid_parameter

MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
SEND_TYPES = MEDIA_TYPES | {"text", "template", "location", "contacts", "interactive", "reaction"}
INTERACTIVE_TYPES = frozenset({
    "button", "list", "cta_url", "flow", "product", "product_list", "catalog_message",
    "location_request_message", "address_message", "call_permission_request",
})
PHONE_NUMBER = re.compile(r"\+?[0-9]{6,15}")
BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
MAX_TEXT_LENGTH = 4096
MAX_REPLY_BUTTONS = 3


def is_mark_as_read(payload):
    return isinstance(payload, dict) and payload.get("status") == "read"


def check_payload(payload, json_error):
    if json_error or not isinstance(payload, dict):
        raise invalid_parameter("The request body must be a JSON object")
    if payload.get("messaging_product") != "whatsapp":
        raise invalid_parameter("messaging_product: the parameter is required and must be 'whatsapp'")


def check_mark_as_read(payload):
    _require(_filled_string(payload.get("message_id")), "message_id: the parameter is required")
    indicator = payload.get("typing_indicator")
    if indicator is not None:
        _require(isinstance(indicator, dict) and indicator.get("type") == "text",
                 "typing_indicator: type must be 'text'")


def check_send(payload):
    """The message type; raises a code-100 GraphError naming the first bad parameter."""
    _check_recipient(payload)
    msg_type = payload.get("type", "text")
    _require(isinstance(msg_type, str) and msg_type in SEND_TYPES,
             f"type: '{msg_type}' is not a supported message type")
    content = payload.get(msg_type)
    _require(content is not None, f"{msg_type}: the parameter is required for type {msg_type}")
    check = _CONTENT_CHECKS.get(msg_type, _check_media)
    check(content, msg_type)
    context = payload.get("context")
    if context is not None:
        _require(isinstance(context, dict) and _filled_string(context.get("message_id")),
                 "context.message_id: the parameter is required")
    return msg_type


def _check_recipient(payload):
    to, recipient = payload.get("to"), payload.get("recipient")
    _require(to or recipient, "to: the parameter is required (or recipient for a business-scoped user id)")
    if to:
        _require(isinstance(to, str) and PHONE_NUMBER.fullmatch(to), f"to: '{to}' is not a phone number")
    if recipient:
        _require(isinstance(recipient, str) and BSUID.fullmatch(recipient),
                 f"recipient: '{recipient}' is not a business-scoped user id")
    recipient_type = payload.get("recipient_type", "individual")
    _require(recipient_type == "individual", "recipient_type: must be 'individual'")


def _check_text(text, _msg_type):
    _require(isinstance(text, dict) and _filled_string(text.get("body")),
             "text.body: the parameter is required")
    _require(len(text["body"]) <= MAX_TEXT_LENGTH, f"text.body: longer than {MAX_TEXT_LENGTH} characters")


def _check_media(media, msg_type):
    _require(isinstance(media, dict) and (_filled_string(media.get("id")) or _filled_string(media.get("link"))),
             f"{msg_type}: id or link is required")


def _check_template(template, _msg_type):
    _require(isinstance(template, dict) and _filled_string(template.get("name")),
             "template.name: the parameter is required")
    language = template.get("language")
    _require(isinstance(language, dict) and _filled_string(language.get("code")),
             "template.language.code: the parameter is required")
    components = template.get("components", [])
    _require(isinstance(components, list), "template.components: must be a list")


def _check_location(location, _msg_type):
    _require(isinstance(location, dict), "location: must be an object")
    for key in ("latitude", "longitude"):
        _require(_is_number(location.get(key)), f"location.{key}: a number is required")


def _check_contacts(contacts, _msg_type):
    _require(isinstance(contacts, list) and contacts and all(isinstance(card, dict) for card in contacts),
             "contacts: a non-empty list of contact objects is required")


def _check_interactive(interactive, _msg_type):
    _require(isinstance(interactive, dict), "interactive: must be an object")
    kind = interactive.get("type")
    _require(isinstance(kind, str) and kind in INTERACTIVE_TYPES, f"interactive.type: '{kind}' is not supported")
    _require(isinstance(interactive.get("action"), dict), "interactive.action: the parameter is required")
    if kind == "button":
        buttons = interactive["action"].get("buttons")
        _require(isinstance(buttons, list) and 1 <= len(buttons) <= MAX_REPLY_BUTTONS,
                 f"interactive.action.buttons: between 1 and {MAX_REPLY_BUTTONS} buttons are required")
    if kind in ("button", "list"):
        body = interactive.get("body")
        _require(isinstance(body, dict) and _filled_string(body.get("text")),
                 "interactive.body.text: the parameter is required")


def _check_reaction(reaction, _msg_type):
    _require(isinstance(reaction, dict) and _filled_string(reaction.get("message_id")),
             "reaction.message_id: the parameter is required")
    _require(isinstance(reaction.get("emoji", ""), str), "reaction.emoji: must be a string")


_CONTENT_CHECKS = {
    "text": _check_text,
    "template": _check_template,
    "location": _check_location,
    "contacts": _check_contacts,
    "interactive": _check_interactive,
    "reaction": _check_reaction,
}


def _require(condition, details):
    if not condition:
        raise invalid_parameter(details)


def _filled_string(value):
    return isinstance(value, str) and value.strip() != ""


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False
