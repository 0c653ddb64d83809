"""WhatsApp Cloud API webhooks as plain data. Pure functions: no ORM, no database, no network.

The controller checks ``signature_is_valid`` on the raw bytes, then ``parse_body`` and
``phone_number_ids`` to find the account(s); the processing model turns the stored body into events
with ``extract_events``, after ``parse_body(..., storable=True)`` has made every string storable.

Meta batches several entries, changes, messages and statuses in one POST and redelivers for days, so
every event carries a ``dedup_key``, and one malformed item becomes an ``InvalidItem`` beside the valid
ones instead of failing the whole delivery: nothing that was signed is silently dropped.
"""
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

OBJECT_WABA = 'whatsapp_business_account'
FIELD_MESSAGES = 'messages'
FIELD_TEMPLATE_STATUS = 'message_template_status_update'
FIELD_TEMPLATE_QUALITY = 'message_template_quality_update'
FIELD_TEMPLATE_CATEGORY = 'template_category_update'
FIELD_USER_PREFERENCES = 'user_preferences'
MARKETING_PREFERENCE = 'marketing_messages'
MEDIA_TYPES = ('image', 'video', 'audio', 'document', 'sticker')

_SIGNATURE_PREFIX = 'sha256='
_HEX_SHA256 = re.compile(r'[0-9a-fA-F]{64}')
_PHONE = re.compile(r'\+?[0-9][0-9 \-]{0,24}', re.ASCII)
_BSUID = re.compile(r'[A-Z]{2}\.[A-Za-z0-9.]+', re.ASCII)
_STATUS_VALUE = re.compile(r'[a-z][a-z_]{0,39}', re.ASCII)
_UNIX_SECONDS = re.compile(r'[0-9]{1,12}', re.ASCII)
_EPOCH = datetime(1970, 1, 1)
# Routing runs before authentication, on whatever a stranger posts: it looks at no more distinct ids
# than this. A real body names one number (all the numbers of a POST belong to the Meta app whose
# secret signed it, so the first ones find that secret).
MAX_ROUTING_IDS = 64
# Meta stamps messages and statuses when they happen: a time further ahead of our receipt than clock
# skew explains is wrong, and a far-future one breaks date arithmetic later (9999-12-31 plus the 24 h
# reply window overflows), so the receipt time stands in for it.
_CLOCK_SKEW = timedelta(hours=1)
# A conversation's expiration is a day or three ahead; beyond this it is not Meta's.
_MAX_EXPIRATION_AHEAD = timedelta(days=30)
# Meta's error codes are small integers; larger ones would not fit the integer column they go to.
_MAX_ERROR_CODE = 2 ** 31 - 1
# JSON can carry NUL (which PostgreSQL refuses in text) and lone surrogates (which cannot be encoded to
# UTF-8) only as \u escapes; a body without any is storable as parsed, and is not walked. A surrogate
# pair (Meta escapes emoji so) matches as a whole, 12 characters; anything shorter is unstorable.
_SURROGATE_PAIR_LENGTH = 12
_UNSTORABLE_ESCAPE = re.compile(r'\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}'
                                r'|\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})')
_SURROGATE = re.compile('[\ud800-\udfff]')


class WebhookPayloadError(ValueError):
    """The body is not a WhatsApp Business Account webhook at all; ``str(error)`` says why."""


class _InvalidItemError(Exception):
    """One item of an otherwise readable body is malformed; becomes an ``InvalidItem`` event."""


class MetaError(NamedTuple):
    """One entry of Meta's ``errors`` arrays (statuses, unsupported messages, ``value.errors``)."""
    code: int | None
    title: str | None
    message: str | None
    details: str | None


# ---------------------------------------------------------------------------------------------------
# Event types
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookEvent:
    """Common to every event: where it came from, its redelivery key and the item as Meta sent it."""
    waba_id: str | None
    phone_number_id: str | None
    dedup_key: str
    raw: object


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    media_id: str
    mime_type: str | None
    sha256: str | None
    filename: str | None
    caption: str | None
    is_voice: bool
    is_animated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    latitude: float
    longitude: float
    name: str | None
    address: str | None
    url: str | None  # Meta's optional place website, not a map

    @property
    def map_url(self):
        return map_link(self.latitude, self.longitude)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaction:
    message_id: str | None
    emoji: str  # '' when the user removed their reaction


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A tap on an interactive button/list row, a template quick-reply button or a flow answer."""
    kind: str  # 'button_reply', 'list_reply', 'nfm_reply' or 'button'
    id_or_payload: str | None
    title: str | None
    description: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    catalog_id: str | None
    product_items: tuple  # of {'product_retailer_id', 'quantity', 'item_price', 'currency'}
    text: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    body: str | None
    new_wa_id: str | None
    new_user_id: str | None
    type: str | None  # 'user_changed_number', 'user_changed_user_id', ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Referral:
    """Set when the user came from a click-to-WhatsApp ad or post."""
    source_url: str | None
    source_id: str | None
    source_type: str | None
    headline: str | None
    body: str | None
    media_type: str | None
    ctwa_clid: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage(WebhookEvent):
    wamid: str
    wa_id: str | None  # digits only; None when Meta gave only the BSUID
    bsuid: str | None
    username: str | None
    profile_name: str | None
    timestamp: datetime  # naive UTC
    message_type: str
    text: str | None
    media: Media | None
    location: Location | None
    contacts: tuple | None  # of {'formatted_name', 'phones'}
    reaction: Reaction | None
    reply: Reply | None
    context_wamid: str | None
    context_from: str | None
    is_forwarded: bool
    order: Order | None
    system: System | None
    errors: tuple  # of MetaError
    referral: Referral | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate(WebhookEvent):
    wamid: str
    status: str  # Meta's value: 'sent', 'delivered', 'read', 'failed', 'deleted', 'warning', ...
    timestamp: datetime
    recipient_id: str | None
    recipient_bsuid: str | None
    conversation_id: str | None
    conversation_expiration: datetime | None
    conversation_origin: str | None
    pricing_billable: bool | None
    pricing_model: str | None
    pricing_category: str | None
    pricing_type: str | None
    errors: tuple  # of MetaError
    biz_opaque_callback_data: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateStatusUpdate(WebhookEvent):
    template_id: str
    name: str | None
    language: str | None
    event: str  # 'APPROVED', 'REJECTED', 'PAUSED', 'DISABLED', ...
    reason: str | None
    category: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateQualityUpdate(WebhookEvent):
    template_id: str
    name: str | None
    language: str | None
    previous_quality_score: str | None
    new_quality_score: str  # 'GREEN', 'YELLOW', 'RED', 'UNKNOWN'


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateCategoryUpdate(WebhookEvent):
    """A completed change (``previous_category``) or an announced one (``correct_category``)."""
    template_id: str
    name: str | None
    language: str | None
    previous_category: str | None
    new_category: str
    correct_category: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketingPreference(WebhookEvent):
    """A contact stopped (or resumed) marketing messages in WhatsApp's own settings (the
    ``user_preferences`` webhook field)."""
    wa_id: str
    stopped: bool
    detail: str | None
    timestamp: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookErrors(WebhookEvent):
    """``value.errors`` of a messages change: Meta could not deliver something to us."""
    errors: tuple  # of MetaError


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsupportedChange(WebhookEvent):
    """A change whose ``field`` we do not handle (account alerts, quality ratings, ...), kept as is."""
    field: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidItem(WebhookEvent):
    """One malformed part of the body (entry, change, message, status, template update)."""
    kind: str
    reason: str


# ---------------------------------------------------------------------------------------------------
# Signature, body, routing
# ---------------------------------------------------------------------------------------------------

def signature_is_valid(raw_body, header_value, app_secret):
    """Whether ``X-Hub-Signature-256`` (``sha256=<hex>``) is the HMAC-SHA256 of the raw body.

    Meta signs the bytes it sent with the app secret, so this must run on the body as received, never
    on re-serialized JSON. Missing or malformed header, or no secret configured: False.
    """
    if not app_secret or not isinstance(app_secret, str) or not isinstance(header_value, str):
        return False
    if not isinstance(raw_body, (bytes, bytearray)):
        return False
    received = header_value.strip()
    if not received.startswith(_SIGNATURE_PREFIX):
        return False
    received = received[len(_SIGNATURE_PREFIX):]
    if not _HEX_SHA256.fullmatch(received):
        return False
    expected = hmac.new(app_secret.encode(), bytes(raw_body), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.lower())


def parse_body(raw_body, storable=False):
    """The webhook body as a dict; ``WebhookPayloadError`` when it is not a WABA webhook envelope.

    With ``storable``, every string (keys included) is one PostgreSQL can store: NUL removed, lone
    surrogates replaced by U+FFFD. The route, which only reads ids for routing before authentication,
    leaves that walk to the processing of authenticated bodies.
    """
    if not isinstance(raw_body, (bytes, bytearray)):
        raise WebhookPayloadError('body is not bytes')
    try:
        text = bytes(raw_body).decode('utf-8-sig')
    except UnicodeDecodeError:
        raise WebhookPayloadError('body is not UTF-8') from None
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise WebhookPayloadError('body is not valid JSON') from None
    _check_envelope(payload)
    if storable and any(len(escape) != _SURROGATE_PAIR_LENGTH for escape in _UNSTORABLE_ESCAPE.findall(text)):
        _make_storable(payload)
    return payload


def storable_text(text):
    """``text`` without NUL and with lone surrogates replaced by U+FFFD: what a text column accepts."""
    if '\x00' in text:
        text = text.replace('\x00', '')
    if not text.isascii():
        try:
            text.encode('utf-8')
        except UnicodeEncodeError:
            text = _SURROGATE.sub('\ufffd', text)
    return text


def _make_storable(payload):
    """Apply ``storable_text`` to every string of a parsed body, in place. Iterative: a body nested
    as deep as the JSON parser allows must not exhaust the stack here."""
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            items = [(storable_text(key), value) for key, value in node.items()]
            node.clear()
            node.update(items)
            pairs = node.items()
        else:
            pairs = enumerate(node)
        for key, value in list(pairs):
            if isinstance(value, str):
                node[key] = storable_text(value)
            elif isinstance(value, (dict, list)):
                stack.append(value)


def _reject_constant(name):
    raise ValueError(f'{name} is not JSON')


def _check_envelope(payload):
    if not isinstance(payload, dict):
        raise WebhookPayloadError('body is not a JSON object')
    if payload.get('object') != OBJECT_WABA:
        raise WebhookPayloadError('"object" is not "whatsapp_business_account"')
    if not isinstance(payload.get('entry'), list):
        raise WebhookPayloadError('"entry" is not a list')


def phone_number_ids(payload, limit=MAX_ROUTING_IDS):
    """The first ``limit`` distinct ``metadata.phone_number_id`` of the changes, in order of appearance.

    Runs before authentication: linear in the body, and stops at ``limit`` (see ``MAX_ROUTING_IDS``).
    """
    return _first_distinct((_metadata_phone_number_id(value) for _entry, value in _change_values(payload)), limit)


def waba_ids(payload, limit=MAX_ROUTING_IDS):
    """The first ``limit`` distinct ``entry[].id`` (WhatsApp Business Account ids), for changes without
    metadata; linear and capped like ``phone_number_ids``."""
    return _first_distinct((_id_str(entry.get('id')) for entry in _entries(payload)), limit)


def _first_distinct(ids, limit):
    found = {}
    for identifier in ids:
        if identifier:
            found[identifier] = None
            if len(found) >= limit:
                break
    return list(found)


def ids_for_log(ids, shown=3, width=24):
    """A short log text for ids read from an unauthenticated body: how many, and the first few,
    truncated and quoted (a log line must not grow with what a stranger posts)."""
    count = f'{len(ids)}+' if len(ids) >= MAX_ROUTING_IDS else str(len(ids))
    sample = [repr(identifier if len(identifier) <= width else identifier[:width] + '…') for identifier in ids[:shown]]
    if len(ids) > shown:
        sample.append('…')
    return f'{count} [{", ".join(sample)}]'


def _entries(payload):
    entries = payload.get('entry') if isinstance(payload, dict) else None
    return (entry for entry in entries if isinstance(entry, dict)) if isinstance(entries, list) else ()


def _change_values(payload):
    for entry in _entries(payload):
        for change in _list(entry.get('changes')):
            if isinstance(change, dict) and isinstance(change.get('value'), dict):
                yield entry, change['value']


def _metadata_phone_number_id(value):
    metadata = value.get('metadata')
    return _id_str(metadata.get('phone_number_id')) if isinstance(metadata, dict) else None


# ---------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------

class _Change(NamedTuple):
    waba_id: str | None
    phone_number_id: str | None
    field: str
    value: dict
    time: object  # entry.time: tells a repeated template event from a redelivered one
    received_at: datetime  # naive UTC: when we received the body, the latest time an event can have


def extract_events(payload, received_at=None):
    """Every event of a parsed body, in order; malformed parts come out as ``InvalidItem``.

    ``received_at`` (naive UTC, default now) is when the body arrived: event times later than that
    are Meta's mistake or a forgery, and become it. Raises ``WebhookPayloadError`` only when ``payload``
    is not a WABA envelope at all.
    """
    _check_envelope(payload)
    received_at = received_at or datetime.now(timezone.utc).replace(tzinfo=None)
    events = []
    for entry in payload['entry']:
        events.extend(_entry_events(entry, received_at))
    return events


def _entry_events(entry, received_at):
    if not isinstance(entry, dict):
        return [_invalid('entry', 'entry is not an object', entry)]
    waba_id = _id_str(entry.get('id'))
    changes = entry.get('changes')
    if not isinstance(changes, list):
        return [_invalid('entry', 'entry has no "changes" list', entry, waba_id=waba_id)]
    events = []
    for change in changes:
        events.extend(_change_events(change, waba_id, entry.get('time'), received_at))
    return events


def _change_events(change, waba_id, time, received_at):
    if not isinstance(change, dict):
        return [_invalid('change', 'change is not an object', change, waba_id=waba_id)]
    field, value = change.get('field'), change.get('value')
    if not isinstance(field, str) or not field:
        return [_invalid('change', 'change has no "field"', change, waba_id=waba_id)]
    if not isinstance(value, dict):
        return [_invalid('change', f'"{field}" change has no "value" object', change, waba_id=waba_id)]
    ctx = _Change(waba_id, _metadata_phone_number_id(value), field, value, time, received_at)
    if field == FIELD_MESSAGES:
        return _messages_change_events(ctx)
    if field == FIELD_USER_PREFERENCES:
        return _preferences_change_events(ctx)
    reader = _TEMPLATE_READERS.get(field)
    if reader is None:
        return [UnsupportedChange(**_common(ctx, f'change:{field}:{_digest([time, value])}', value),
                                  field=field)]
    return [_guarded(reader, ctx, value, 'template update', ctx)]


def _messages_change_events(ctx):
    if ctx.phone_number_id is None:
        return [_invalid('change', 'messages change has no metadata.phone_number_id', ctx.value,
                         waba_id=ctx.waba_id)]
    contacts = _ContactIndex(ctx.value.get('contacts'))
    events = []
    for key, kind, reader in (('messages', 'message', _message_event), ('statuses', 'status', _status_event)):
        items = ctx.value.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            events.append(_invalid(kind, f'"{key}" is not a list', items, ctx=ctx))
            continue
        events.extend(_guarded(reader, ctx, item, kind, ctx, item, contacts) for item in items)
    if 'errors' in ctx.value:
        events.append(_webhook_errors(ctx))
    return events


def _preferences_change_events(ctx):
    if ctx.phone_number_id is None:
        return [_invalid('change', 'user_preferences change has no metadata.phone_number_id', ctx.value,
                         waba_id=ctx.waba_id)]
    items = ctx.value.get('user_preferences')
    if not isinstance(items, list):
        return [_invalid('preference', '"user_preferences" is not a list', items, ctx=ctx)]
    return [_guarded(_preference_event, ctx, item, 'preference', ctx, item) for item in items]


def _preference_event(ctx, item):
    wa_id = _phone_digits(item.get('wa_id'))
    if not wa_id:
        raise _InvalidItemError('preference has no valid "wa_id"')
    category, value = _text(item.get('category')), (_text(item.get('value')) or '').lower()
    if category != MARKETING_PREFERENCE or value not in ('stop', 'resume'):
        return UnsupportedChange(**_common(ctx, f'preference:{_digest(item)}', item),
                                 field=f'{FIELD_USER_PREFERENCES}:{category}:{value}')
    timestamp = _event_time(item.get('timestamp'), 'preference', ctx)
    return MarketingPreference(
        **_common(ctx, f'preference:{ctx.phone_number_id}:{wa_id}:{value}:{_digest(item)}', item),
        wa_id=wa_id, stopped=value == 'stop', detail=_text(item.get('detail')), timestamp=timestamp)


def _guarded(reader, ctx, raw, kind, *args):
    """Run one item reader; a malformed item becomes an ``InvalidItem``, never an exception."""
    if not isinstance(raw, dict):
        return _invalid(kind, f'{kind} is not an object', raw, ctx=ctx)
    try:
        return reader(*args)
    except _InvalidItemError as error:
        return _invalid(kind, str(error), raw, ctx=ctx)
    except Exception as error:  # noqa: BLE001 - a reader bug must not lose the rest of a signed body
        return _invalid(kind, f'unreadable {kind} ({type(error).__name__})', raw, ctx=ctx)


def _invalid(kind, reason, raw, waba_id=None, ctx=None):
    return InvalidItem(
        waba_id=ctx.waba_id if ctx else waba_id,
        phone_number_id=ctx.phone_number_id if ctx else None,
        dedup_key=f'invalid:{kind}:{_digest(raw)}',
        raw=raw, kind=kind, reason=reason,
    )


def _common(ctx, dedup_key, raw):
    return {'waba_id': ctx.waba_id, 'phone_number_id': ctx.phone_number_id,
            'dedup_key': dedup_key, 'raw': raw}


def _webhook_errors(ctx):
    errors = ctx.value['errors']
    if not isinstance(errors, list):
        return _invalid('errors', '"errors" is not a list', errors, ctx=ctx)
    key = f'errors:{ctx.phone_number_id}:{_digest([ctx.time, errors])}'
    return WebhookErrors(**_common(ctx, key, errors), errors=_errors(errors))


# --- messages ---------------------------------------------------------------------------------------

class _ContactIndex:
    """``value.contacts`` by wa_id and by BSUID, so each message finds its sender's profile."""
    __slots__ = ('by_key', 'single')

    def __init__(self, contacts):
        cards = [_sender_card(contact) for contact in _list(contacts) if isinstance(contact, dict)]
        self.by_key = {}
        for card in cards:
            for key in (card['wa_id'], card['user_id']):
                if key:
                    self.by_key.setdefault(key, card)
        # Meta sends one contact per sender; its wa_id may differ in form from "from" (country mobile
        # prefixes), so a lone contact is that sender's.
        self.single = cards[0] if len(cards) == 1 else None

    def find(self, wa_id, bsuid):
        for key in (wa_id, bsuid):
            if key and key in self.by_key:
                return self.by_key[key]
        return self.single or _NO_CARD


_NO_CARD = {'wa_id': None, 'user_id': None, 'name': None, 'username': None}


def _sender_card(contact):
    profile = _dict(contact.get('profile'))
    return {
        'wa_id': _phone_digits(contact.get('wa_id')),
        'user_id': _text(contact.get('user_id')),
        'name': _text(profile.get('name')),
        'username': _text(profile.get('username')),
    }


def _message_event(ctx, message, contacts):
    wamid = _require_id(message.get('id'), 'message has no "id"')
    timestamp = _event_time(message.get('timestamp'), 'message', ctx)
    message_type = message.get('type')
    if not isinstance(message_type, str) or not message_type:
        raise _InvalidItemError('message has no "type"')
    sender = message.get('from')
    wa_id = _phone_digits(sender)
    bsuid = _text(message.get('from_user_id')) or (sender if _is_bsuid(sender) else None)
    card = contacts.find(wa_id, bsuid)
    wa_id, bsuid = wa_id or card['wa_id'], bsuid or card['user_id']
    if not wa_id and not bsuid:
        raise _InvalidItemError('message has no sender ("from" / "from_user_id")')
    context = _dict(message.get('context'))
    content = dict(_EMPTY_CONTENT)
    content.update(_CONTENT_READERS.get(message_type, _no_content)(message, message_type))
    return InboundMessage(
        **_common(ctx, f'msg:{ctx.phone_number_id}:{wamid}', message),
        wamid=wamid, wa_id=wa_id, bsuid=bsuid, username=card['username'], profile_name=card['name'],
        timestamp=timestamp, message_type=message_type,
        context_wamid=_id_str(context.get('id')), context_from=_id_str(context.get('from')),
        is_forwarded=context.get('forwarded') is True or context.get('frequently_forwarded') is True,
        errors=_errors(message.get('errors')), referral=_referral(message.get('referral')),
        **content,
    )


_EMPTY_CONTENT = {
    'text': None, 'media': None, 'location': None, 'contacts': None, 'reaction': None, 'reply': None,
    'order': None, 'system': None,
}


def _no_content(message, message_type):
    return {}


def _text_content(message, message_type):
    return {'text': _text(_dict(message.get('text')).get('body'))}


def _media_content(message, message_type):
    data = _dict(message.get(message_type))
    caption = _text(data.get('caption'))
    media_id = _id_str(data.get('id'))
    if media_id is None:
        return {'text': caption}
    media = Media(
        media_id=media_id, mime_type=_text(data.get('mime_type')), sha256=_text(data.get('sha256')),
        filename=_text(data.get('filename')), caption=caption,
        is_voice=data.get('voice') is True, is_animated=data.get('animated') is True,
    )
    return {'text': caption, 'media': media}


def _location_content(message, message_type):
    data = _dict(message.get('location'))
    latitude = _coordinate(data.get('latitude'), 90)
    longitude = _coordinate(data.get('longitude'), 180)
    if latitude is None or longitude is None:
        return {}
    return {'location': Location(
        latitude=latitude, longitude=longitude, name=_text(data.get('name')),
        address=_text(data.get('address')), url=_text(data.get('url')),
    )}


def _contacts_content(message, message_type):
    cards = tuple(_shared_card(card) for card in _list(message.get('contacts')) if isinstance(card, dict))
    return {'contacts': cards or None}


def _shared_card(card):
    phones = (_dict(phone) for phone in _list(card.get('phones')))
    numbers = (_text(phone.get('phone')) or _id_str(phone.get('wa_id')) for phone in phones)
    return {
        'formatted_name': _text(_dict(card.get('name')).get('formatted_name')),
        'phones': tuple(number for number in numbers if number),
    }


def _interactive_content(message, message_type):
    data = _dict(message.get('interactive'))
    kind = data.get('type')
    detail = _dict(data.get(kind)) if isinstance(kind, str) and kind else {}
    if not detail:
        return {}
    if kind == 'nfm_reply':
        # A WhatsApp Flow answer: the form data is a JSON string in response_json.
        reply = Reply(kind=kind, id_or_payload=_text(detail.get('response_json')),
                      title=_text(detail.get('name')), description=_text(detail.get('body')))
        return {'reply': reply, 'text': reply.description or reply.title}
    reply = Reply(kind=kind, id_or_payload=_id_str(detail.get('id')),
                  title=_text(detail.get('title')), description=_text(detail.get('description')))
    return {'reply': reply, 'text': reply.title}


def _button_content(message, message_type):
    data = _dict(message.get('button'))
    if not data:
        return {}
    reply = Reply(kind='button', id_or_payload=_id_str(data.get('payload')),
                  title=_text(data.get('text')), description=None)
    return {'reply': reply, 'text': reply.title}


def _reaction_content(message, message_type):
    data = _dict(message.get('reaction'))
    emoji = data.get('emoji')
    reaction = Reaction(message_id=_id_str(data.get('message_id')),
                        emoji=emoji if isinstance(emoji, str) else '')
    return {'reaction': reaction, 'text': reaction.emoji or None}


def _order_content(message, message_type):
    data = _dict(message.get('order'))
    items = tuple(_order_item(item) for item in _list(data.get('product_items')) if isinstance(item, dict))
    order = Order(catalog_id=_id_str(data.get('catalog_id')), product_items=items,
                  text=_text(data.get('text')))
    return {'order': order, 'text': order.text}


def _order_item(item):
    return {
        'product_retailer_id': _id_str(item.get('product_retailer_id')),
        'quantity': _number(item.get('quantity')),
        'item_price': _number(item.get('item_price')),
        'currency': _text(item.get('currency')),
    }


def _system_content(message, message_type):
    data = _dict(message.get('system'))
    system = System(
        body=_text(data.get('body')),
        new_wa_id=_phone_digits(data.get('wa_id')) or _phone_digits(data.get('new_wa_id')),
        new_user_id=_text(data.get('user_id')) or _text(data.get('new_user_id')),
        type=_text(data.get('type')),
    )
    return {'system': system, 'text': system.body}


_CONTENT_READERS = {
    'text': _text_content,
    **{media_type: _media_content for media_type in MEDIA_TYPES},
    'location': _location_content,
    'contacts': _contacts_content,
    'interactive': _interactive_content,
    'button': _button_content,
    'reaction': _reaction_content,
    'order': _order_content,
    'system': _system_content,
}


def _referral(data):
    if not isinstance(data, dict) or not data:
        return None
    return Referral(
        source_url=_text(data.get('source_url')), source_id=_id_str(data.get('source_id')),
        source_type=_text(data.get('source_type')), headline=_text(data.get('headline')),
        body=_text(data.get('body')), media_type=_text(data.get('media_type')),
        ctwa_clid=_text(data.get('ctwa_clid')),
    )


# --- statuses ---------------------------------------------------------------------------------------

def _status_event(ctx, status, contacts):
    wamid = _require_id(status.get('id'), 'status has no "id"')
    value = status.get('status')
    if not isinstance(value, str) or not _STATUS_VALUE.fullmatch(value):
        raise _InvalidItemError('status has no valid "status" value')
    timestamp = _event_time(status.get('timestamp'), 'status', ctx)
    recipient = status.get('recipient_id')
    recipient_id = _phone_digits(recipient)
    bsuid = _text(status.get('recipient_user_id')) or (recipient if _is_bsuid(recipient) else None)
    conversation = _dict(status.get('conversation'))
    pricing = _dict(status.get('pricing'))
    billable = pricing.get('billable')
    return StatusUpdate(
        **_common(ctx, f'status:{ctx.phone_number_id}:{wamid}:{value}', status),
        wamid=wamid, status=value, timestamp=timestamp,
        recipient_id=recipient_id,
        recipient_bsuid=bsuid or (contacts.by_key.get(recipient_id) or _NO_CARD)['user_id'],
        conversation_id=_id_str(conversation.get('id')),
        conversation_expiration=_expiration(conversation.get('expiration_timestamp'), ctx),
        conversation_origin=_text(_dict(conversation.get('origin')).get('type')),
        pricing_billable=billable if isinstance(billable, bool) else None,
        pricing_model=_text(pricing.get('pricing_model')),
        pricing_category=_text(pricing.get('category')),
        pricing_type=_text(pricing.get('type')),
        errors=_errors(status.get('errors')),
        biz_opaque_callback_data=_text(status.get('biz_opaque_callback_data')),
    )


# --- template updates -------------------------------------------------------------------------------

def _template_basics(ctx, prefix, required_key):
    """Fields shared by template updates; ``required_key`` is the one that says what changed."""
    value = ctx.value
    template_id = _require_id(value.get('message_template_id'),
                              'template update has no "message_template_id"')
    changed = _text(value.get(required_key))
    if changed is None:
        raise _InvalidItemError(f'template update has no "{required_key}"')
    key = f'{prefix}:{template_id}:{changed}:{_digest([ctx.time, value])}'
    return changed, {
        **_common(ctx, key, value), 'template_id': template_id,
        'name': _text(value.get('message_template_name')),
        'language': _text(value.get('message_template_language')),
    }


def _template_status_event(ctx):
    event, basics = _template_basics(ctx, 'tpl_status', 'event')
    return TemplateStatusUpdate(
        **basics, event=event, reason=_text(ctx.value.get('reason')),
        category=_text(ctx.value.get('message_template_category')),
    )


def _template_quality_event(ctx):
    score, basics = _template_basics(ctx, 'tpl_quality', 'new_quality_score')
    return TemplateQualityUpdate(
        **basics, new_quality_score=score,
        previous_quality_score=_text(ctx.value.get('previous_quality_score')),
    )


def _template_category_event(ctx):
    category, basics = _template_basics(ctx, 'tpl_category', 'new_category')
    return TemplateCategoryUpdate(
        **basics, new_category=category,
        previous_category=_text(ctx.value.get('previous_category')),
        correct_category=_text(ctx.value.get('correct_category')),
    )


_TEMPLATE_READERS = {
    FIELD_TEMPLATE_STATUS: _template_status_event,
    FIELD_TEMPLATE_QUALITY: _template_quality_event,
    FIELD_TEMPLATE_CATEGORY: _template_category_event,
}


# ---------------------------------------------------------------------------------------------------
# Presentation
# ---------------------------------------------------------------------------------------------------

def map_link(latitude, longitude):
    """A maps URL pointing at the coordinates; ValueError when they are not valid coordinates."""
    lat, lon = _coordinate(latitude, 90), _coordinate(longitude, 180)
    if lat is None or lon is None:
        raise ValueError(f'invalid coordinates: {latitude!r}, {longitude!r}')
    return f'https://www.google.com/maps/search/?api=1&query={_decimal(lat)},{_decimal(lon)}'


def _decimal(number):
    return f'{number:.7f}'.rstrip('0').rstrip('.')


# ---------------------------------------------------------------------------------------------------
# Value readers: total functions, they never raise on odd JSON
# ---------------------------------------------------------------------------------------------------

def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return value if isinstance(value, list) else []


def _text(value):
    return value if isinstance(value, str) and value else None


def _id_str(value):
    """An identifier Meta sends as a string (sometimes as a number): its text, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str):
        return value.strip() or None
    return None


def _require_id(value, reason):
    identifier = _id_str(value)
    if identifier is None:
        raise _InvalidItemError(reason)
    return identifier


def _phone_digits(value):
    """The digits of a phone number / wa_id ('+1 555-0100' -> '15550100'); None for anything else."""
    if not isinstance(value, str) or not _PHONE.fullmatch(value.strip()):
        return None
    return re.sub(r'[^0-9]', '', value)


def _is_bsuid(value):
    return isinstance(value, str) and _BSUID.fullmatch(value) is not None


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if isinstance(value, int) or math.isfinite(value) else None


def _coordinate(value, limit):
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    value = _number(value)
    return float(value) if value is not None and -limit <= value <= limit else None


def _timestamp(value):
    """Naive UTC datetime from Meta's unix seconds (a string, sometimes a number); None if invalid."""
    if isinstance(value, str) and _UNIX_SECONDS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    try:
        return _EPOCH + timedelta(seconds=value)
    except OverflowError:
        return None


def _event_time(value, what, ctx):
    """When a message or status happened: its timestamp, or the receipt time when it claims a later
    one (see ``_CLOCK_SKEW``); unreadable or unrepresentable, the item is invalid."""
    timestamp = _timestamp(value)
    if timestamp is None:
        raise _InvalidItemError(f'{what} has no valid "timestamp"')
    return ctx.received_at if timestamp > ctx.received_at + _CLOCK_SKEW else timestamp


def _expiration(value, ctx):
    expiration = _timestamp(value)
    return expiration if expiration is not None and expiration <= ctx.received_at + _MAX_EXPIRATION_AHEAD else None


def _errors(value):
    return tuple(_meta_error(error) for error in _list(value) if isinstance(error, dict))


def _meta_error(error):
    code = error.get('code')
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) < 10:
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool) or abs(code) > _MAX_ERROR_CODE:
        code = None
    return MetaError(
        code=code,
        title=_text(error.get('title')),
        message=_text(error.get('message')),
        details=_text(_dict(error.get('error_data')).get('details')),
    )


def _digest(value):
    """A short stable fingerprint of JSON content (for keys of events that have no id of their own)."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(',', ':'), default=repr)
    except (TypeError, ValueError, RecursionError):
        text = f'<unserializable {type(value).__name__}>'
    return hashlib.sha256(text.encode('utf-8', 'backslashreplace')).hexdigest()[:20]
