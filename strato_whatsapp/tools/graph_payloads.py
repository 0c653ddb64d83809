"""The JSON bodies of Meta's /messages calls, exactly as Meta expects them. Pure Python: the send queue
builds a message's request with these at send time, from the message's own fields."""
from .. import const
from .phone import digits


# ---------------------------------------------------------------------------
# Payload builders (pure)
# ---------------------------------------------------------------------------
def recipient_fields(to=None, bsuid=None):
    """``{"to": digits}`` for a phone number, else ``{"recipient": bsuid}``.

    Meta recommends phone numbers when known (webhooks then keep carrying them), and
    itself gives ``to`` precedence when both are sent.
    """
    phone_digits = digits(str(to or ""))
    if phone_digits:
        return {"to": phone_digits}
    if bsuid and str(bsuid).strip():
        return {"recipient": str(bsuid).strip()}
    raise ValueError("A WhatsApp message needs a phone number or a BSUID")


def _message_payload(msg_type, content, to, bsuid=None, reply_to=None, callback_data=None):
    payload = {
        "messaging_product": const.MESSAGING_PRODUCT,
        "recipient_type": "individual",
        **recipient_fields(to, bsuid),
        "type": msg_type,
        msg_type: content,
    }
    if reply_to:
        payload["context"] = {"message_id": reply_to}
    if callback_data not in (None, ""):
        # Meta echoes it in every status webhook of this message (max 512 characters).
        payload["biz_opaque_callback_data"] = str(callback_data)[:512]
    return payload


def build_text_payload(to, body, preview_url=False, reply_to=None, bsuid=None, callback_data=None):
    if not body:
        raise ValueError("A text message needs a body")
    return _message_payload("text", {"preview_url": bool(preview_url), "body": body},
                            to, bsuid, reply_to, callback_data)


def build_template_payload(to, name, language, components=None, reply_to=None, bsuid=None,
                           callback_data=None):
    """``language`` is a code ("es", "en_US") or a ready ``{"code": ...}`` dict;
    ``components`` is Meta's list of header/body/button parameter blocks."""
    template = {"name": name, "language": language if isinstance(language, dict) else {"code": language}}
    if components:
        template["components"] = list(components)
    return _message_payload("template", template, to, bsuid, reply_to, callback_data)


def build_media_payload(to, media_type, media_id=None, link=None, caption=None, filename=None,
                        reply_to=None, bsuid=None, callback_data=None):
    """Media by uploaded ``media_id`` or public ``link`` (exactly one). Captions only for
    image, video and document; ``filename`` only for documents."""
    if media_type not in const.MEDIA_TYPES:
        raise ValueError(f"Unknown media type {media_type!r}")
    if bool(media_id) == bool(link):
        raise ValueError("Give exactly one of media_id and link")
    media = {"id": media_id} if media_id else {"link": link}
    if caption:
        if media_type not in const.MEDIA_CAPTION_TYPES:
            raise ValueError(f"A {media_type} message cannot have a caption")
        media["caption"] = caption
    if filename and media_type == "document":
        media["filename"] = filename
    return _message_payload(media_type, media, to, bsuid, reply_to, callback_data)


def build_location_payload(to, latitude, longitude, name=None, address=None, reply_to=None,
                           bsuid=None, callback_data=None):
    location = {"latitude": float(latitude), "longitude": float(longitude)}
    if name:
        location["name"] = name
    if address:
        location["address"] = address
    return _message_payload("location", location, to, bsuid, reply_to, callback_data)


def build_contacts_payload(to, contacts, reply_to=None, bsuid=None, callback_data=None):
    """``contacts`` are Meta contact cards (``name.formatted_name``, ``phones``...)."""
    if not contacts:
        raise ValueError("A contacts message needs at least one contact")
    return _message_payload("contacts", list(contacts), to, bsuid, reply_to, callback_data)


def build_reaction_payload(to, message_id, emoji, bsuid=None, callback_data=None):
    """React to ``message_id``; an empty ``emoji`` removes our reaction."""
    reaction = {"message_id": message_id, "emoji": emoji or ""}
    return _message_payload("reaction", reaction, to, bsuid, None, callback_data)


def build_interactive_buttons_payload(to, body, buttons, header=None, footer=None, reply_to=None,
                                      bsuid=None, callback_data=None):
    """Reply buttons: ``buttons`` is up to 3 ``(id, title)`` pairs, titles up to 20
    characters. ``header`` is a text or a ready Meta header dict (image, video...)."""
    buttons = list(buttons or ())
    if not 1 <= len(buttons) <= const.INTERACTIVE_MAX_BUTTONS:
        raise ValueError(f"Reply buttons: 1 to {const.INTERACTIVE_MAX_BUTTONS} buttons")
    _check_unique_ids(button_id for button_id, _title in buttons)
    limit = const.INTERACTIVE_BUTTON_TITLE_MAX
    action = {"buttons": [
        {"type": "reply", "reply": {"id": str(button_id), "title": _limited(title, limit)}}
        for button_id, title in buttons
    ]}
    interactive = _interactive("button", body, action, header, footer)
    return _message_payload("interactive", interactive, to, bsuid, reply_to, callback_data)


def build_interactive_list_payload(to, body, button, sections, header=None, footer=None,
                                   reply_to=None, bsuid=None, callback_data=None):
    """List message: ``button`` opens the list; ``sections`` are dicts with an optional
    ``title`` and ``rows``, each row a dict (id, title, description?) or a tuple
    ``(id, title[, description])``. At most 10 rows in total."""
    sections = [_list_section(section) for section in sections or ()]
    rows = [row for section in sections for row in section["rows"]]
    if not sections or len(sections) > const.INTERACTIVE_LIST_MAX_SECTIONS:
        raise ValueError(f"A list needs 1 to {const.INTERACTIVE_LIST_MAX_SECTIONS} sections")
    if not rows or len(rows) > const.INTERACTIVE_LIST_MAX_ROWS:
        raise ValueError(f"A list needs 1 to {const.INTERACTIVE_LIST_MAX_ROWS} rows in total")
    if len(sections) > 1 and not all(section.get("title") for section in sections):
        raise ValueError("Every section needs a title when there are several")
    _check_unique_ids(row["id"] for row in rows)
    action = {"button": _limited(button, const.INTERACTIVE_BUTTON_TITLE_MAX), "sections": sections}
    interactive = _interactive("list", body, action, header, footer)
    return _message_payload("interactive", interactive, to, bsuid, reply_to, callback_data)


def build_read_payload(message_id, typing_indicator=False):
    """Mark an inbound message read; with ``typing_indicator`` also show "typing…" (Meta
    clears it on our reply or after 25 s)."""
    payload = {"messaging_product": const.MESSAGING_PRODUCT, "status": "read", "message_id": message_id}
    if typing_indicator:
        payload["typing_indicator"] = {"type": "text"}
    return payload


def _interactive(kind, body, action, header, footer):
    if not body:
        raise ValueError("An interactive message needs a body")
    interactive = {"type": kind}
    if header:
        interactive["header"] = header if isinstance(header, dict) else {"type": "text", "text": header}
    interactive["body"] = {"text": body}
    if footer:
        interactive["footer"] = {"text": footer}
    interactive["action"] = action
    return interactive


def _list_section(section):
    rows = []
    for row in section.get("rows") or ():
        if not isinstance(row, dict):
            row = dict(zip(("id", "title", "description"), row))
        clean = {"id": str(row["id"]), "title": _limited(row["title"], const.INTERACTIVE_LIST_ROW_TITLE_MAX)}
        if row.get("description"):
            clean["description"] = _limited(row["description"], const.INTERACTIVE_LIST_ROW_DESCRIPTION_MAX)
        rows.append(clean)
    return {"title": section["title"], "rows": rows} if section.get("title") else {"rows": rows}


def _limited(text, limit):
    if not text or len(text) > limit:
        raise ValueError(f"{text!r}: needs 1 to {limit} characters")
    return text


def _check_unique_ids(ids):
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids) or not all(ids):
        raise ValueError("Button and row ids must be non-empty and unique")


def extract_wamid(result):
    """The wamid of an accepted send (``messages[0].id``), or None."""
    try:
        return result["messages"][0]["id"] or None
    except (KeyError, IndexError, TypeError):
        return None
