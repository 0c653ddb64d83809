"""Webhook bodies as Meta sends them -> normalized events (``tools/webhook.py``). No ORM."""
import copy
import dataclasses
import hashlib
import hmac
import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ..tools import webhook
from . import unit_cases

WABA_ID = '102290129340398'
PHONE_NUMBER_ID = '106540352242922'
DISPLAY_NUMBER = '15550783881'
WA_ID = '16505551234'
BSUID = 'US.13491208655302741918'
TIMESTAMP = '1739321024'
TIMESTAMP_DT = datetime(2025, 2, 12, 0, 43, 44)
APP_SECRET = 'a3f1c0ffee0ddba11'


# ---------------------------------------------------------------------------
# A one-line summary of a parsed message: what each parser read, checked in one assertion per case
# ---------------------------------------------------------------------------
PREVIEW_LENGTH = 200


def text_preview(event):
    """A one-line plain summary of an inbound message for logs and notifications ('[image] caption')."""
    if not isinstance(event, webhook.InboundMessage):
        return f'[{type(event).__name__}]'
    if event.message_type == 'text':
        return _one_line(event.text or '')
    label, detail = _PREVIEWS.get(event.message_type, _preview_default)(event)
    return _one_line(f'[{label}] {detail or ""}')


def _preview_default(event):
    return event.message_type, event.text


def _preview_media(event):
    is_voice = event.media is not None and event.media.is_voice
    filename = event.media.filename if event.media else None
    return ('voice' if is_voice else event.message_type), (event.text or filename)


def _preview_location(event):
    location = event.location
    if location is None:
        return 'location', None
    coordinates = f'{webhook._decimal(location.latitude)}, {webhook._decimal(location.longitude)}'
    return 'location', location.name or location.address or coordinates


def _preview_contacts(event):
    names = (card['formatted_name'] or ', '.join(card['phones']) for card in event.contacts or ())
    return 'contacts', ', '.join(name for name in names if name)


def _preview_reply(event):
    return 'reply', event.text


def _preview_reaction(event):
    if event.reaction is not None and not event.reaction.emoji:
        return 'reaction removed', None
    return 'reaction', event.text


def _preview_order(event):
    count = len(event.order.product_items) if event.order else 0
    return 'order', f'{count} item(s)' + (f': {event.text}' if event.text else '')


def _preview_unsupported(event):
    return 'unsupported', next((error.title or error.message for error in event.errors), None)


_PREVIEWS = {
    **{media_type: _preview_media for media_type in webhook.MEDIA_TYPES},
    'location': _preview_location,
    'contacts': _preview_contacts,
    'interactive': _preview_reply,
    'button': _preview_reply,
    'reaction': _preview_reaction,
    'order': _preview_order,
    'unsupported': _preview_unsupported,
}


def _one_line(text):
    line = ' '.join(text.split())
    return line if len(line) <= PREVIEW_LENGTH else line[:PREVIEW_LENGTH - 1] + '…'


# ---------------------------------------------------------------------------------------------------
# Payload builders (shapes from Meta's webhook reference)
# ---------------------------------------------------------------------------------------------------


def envelope(*entries):
    return {'object': 'whatsapp_business_account', 'entry': list(entries)}


def entry(*changes, waba_id=WABA_ID, time=None):
    result = {'id': waba_id, 'changes': list(changes)}
    if time is not None:
        result['time'] = time
    return result


def messages_change(messages=(), statuses=(), contacts=None, phone_number_id=PHONE_NUMBER_ID, errors=None):
    value = {
        'messaging_product': 'whatsapp',
        'metadata': {'display_phone_number': DISPLAY_NUMBER, 'phone_number_id': phone_number_id},
    }
    if contacts is not None:
        value['contacts'] = contacts
    if messages:
        value['messages'] = list(messages)
    if statuses:
        value['statuses'] = list(statuses)
    if errors is not None:
        value['errors'] = errors
    return {'field': 'messages', 'value': value}


def contact(name='Sheena Nelson', wa_id=WA_ID, user_id=None, username=None):
    result = {'profile': {'name': name}}
    if wa_id:
        result['wa_id'] = wa_id
    if user_id:
        result['user_id'] = user_id
    if username:
        result['profile']['username'] = username
    return result


def message(msg_type, wamid, sender=WA_ID, user_id=None, **fields):
    result = {'id': wamid, 'timestamp': TIMESTAMP, 'type': msg_type, **fields}
    if sender:
        result['from'] = sender
    if user_id:
        result['from_user_id'] = user_id
    return result


def inbound(msg_type, wamid='wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=', **fields):
    """A whole envelope with one message from WA_ID."""
    return envelope(entry(messages_change([message(msg_type, wamid, **fields)], contacts=[contact()])))


def status(wamid, value, recipient_id=WA_ID, **fields):
    result = {'id': wamid, 'status': value, 'timestamp': TIMESTAMP, **fields}
    if recipient_id:
        result['recipient_id'] = recipient_id
    return result


def conversation_and_pricing(category='service'):
    return {
        'conversation': {'id': 'CONVERSATION_ID_1', 'expiration_timestamp': '1739407424',
                         'origin': {'type': category}},
        'pricing': {'billable': False, 'pricing_model': 'PMP', 'category': category,
                    'type': 'free_customer_service'},
    }


def template_change(field, **value):
    return {'field': field, 'value': value}


def only_event(payload):
    events = webhook.extract_events(webhook.parse_body(json.dumps(payload).encode()))
    assert len(events) == 1, events
    return events[0]


def sign(body, secret=APP_SECRET):
    return 'sha256=' + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Inbound messages, one per type
# ---------------------------------------------------------------------------------------------------

def test_text_message():
    payload = inbound('text', text={'body': 'Hola, quiero una cotización'})
    event = only_event(payload)
    assert isinstance(event, webhook.InboundMessage)
    assert event.waba_id == WABA_ID
    assert event.phone_number_id == PHONE_NUMBER_ID
    assert event.wamid.startswith('wamid.')
    assert event.dedup_key == f'msg:{PHONE_NUMBER_ID}:{event.wamid}'
    assert event.wa_id == WA_ID
    assert event.bsuid is None
    assert event.profile_name == 'Sheena Nelson'
    assert event.timestamp == TIMESTAMP_DT and event.timestamp.tzinfo is None
    assert event.message_type == 'text'
    assert event.text == 'Hola, quiero una cotización'
    assert (event.media, event.location, event.contacts, event.reaction, event.reply) == (None,) * 5
    assert (event.order, event.system, event.referral, event.context_wamid) == (None,) * 4
    assert event.errors == () and event.is_forwarded is False
    assert event.raw == payload['entry'][0]['changes'][0]['value']['messages'][0]
    assert text_preview(event) == 'Hola, quiero una cotización'


def test_image_message_with_caption():
    event = only_event(inbound('image', image={
        'caption': 'Our storefront', 'mime_type': 'image/jpeg', 'id': '1003383421387256',
        'sha256': 'Ts9Hd8rRPRQ1iDrSoJ7nm5a9n8Rl8NO/KCTFQ3MI4Ps=',
    }))
    assert event.message_type == 'image'
    assert event.media == webhook.Media(
        media_id='1003383421387256', mime_type='image/jpeg', sha256='Ts9Hd8rRPRQ1iDrSoJ7nm5a9n8Rl8NO/KCTFQ3MI4Ps=',
        filename=None, caption='Our storefront', is_voice=False, is_animated=False,
    )
    assert event.text == 'Our storefront'
    assert text_preview(event) == '[image] Our storefront'


def test_video_message():
    event = only_event(inbound('video', video={'mime_type': 'video/mp4', 'id': '1166846181421424',
                                               'sha256': 'abc='}))
    assert event.media.media_id == '1166846181421424'
    assert event.media.mime_type == 'video/mp4'
    assert event.text is None
    assert text_preview(event) == '[video]'


def test_audio_voice_message():
    event = only_event(inbound('audio', audio={
        'mime_type': 'audio/ogg; codecs=opus', 'sha256': 'xyz=', 'id': '1003383421387257', 'voice': True,
    }))
    assert event.media.is_voice is True
    assert event.media.mime_type == 'audio/ogg; codecs=opus'
    assert text_preview(event) == '[voice]'


def test_audio_file_is_not_voice():
    event = only_event(inbound('audio', audio={'mime_type': 'audio/mpeg', 'id': '77', 'voice': False}))
    assert event.media.is_voice is False
    assert text_preview(event) == '[audio]'


def test_document_with_filename():
    event = only_event(inbound('document', document={
        'caption': 'Signed quote', 'filename': 'quote-2025-02.pdf', 'mime_type': 'application/pdf',
        'sha256': 'def=', 'id': '1003383421387258',
    }))
    assert event.media.filename == 'quote-2025-02.pdf'
    assert event.media.caption == 'Signed quote'
    assert event.text == 'Signed quote'
    without_caption = only_event(inbound('document', document={'filename': 'invoice.pdf', 'id': '9'}))
    assert text_preview(without_caption) == '[document] invoice.pdf'


def test_animated_sticker():
    event = only_event(inbound('sticker', sticker={
        'mime_type': 'image/webp', 'sha256': 'st=', 'id': '1003383421387259', 'animated': True,
    }))
    assert event.media.is_animated is True
    assert event.media.is_voice is False
    assert text_preview(event) == '[sticker]'


def test_media_without_id_keeps_the_message():
    event = only_event(inbound('image', image={'caption': 'lost file'}))
    assert isinstance(event, webhook.InboundMessage)
    assert event.media is None
    assert event.text == 'lost file'


def test_location_message():
    event = only_event(inbound('location', location={
        'address': '1 Hacker Way, Menlo Park, CA 94025', 'latitude': 37.483253479003906,
        'longitude': -122.14960479736328, 'name': 'Main office', 'url': 'https://www.example.com',
    }))
    location = event.location
    assert (location.latitude, location.longitude) == (37.483253479003906, -122.14960479736328)
    assert location.name == 'Main office'
    assert location.address == '1 Hacker Way, Menlo Park, CA 94025'
    assert location.url == 'https://www.example.com'
    assert location.map_url == 'https://www.google.com/maps/search/?api=1&query=37.4832535,-122.1496048'
    assert text_preview(event) == '[location] Main office'


def test_location_without_name_shows_coordinates():
    event = only_event(inbound('location', location={'latitude': -34.6, 'longitude': -58.38}))
    assert event.location.name is None and event.location.url is None
    assert text_preview(event) == '[location] -34.6, -58.38'


def test_location_with_invalid_coordinates():
    event = only_event(inbound('location', location={'latitude': 'north', 'longitude': 200}))
    assert isinstance(event, webhook.InboundMessage)
    assert event.location is None


def test_contacts_message():
    event = only_event(inbound('contacts', contacts=[
        {
            'name': {'formatted_name': 'Barbara J. Johnson', 'first_name': 'Barbara', 'last_name': 'Johnson'},
            'phones': [{'phone': '+1 (940) 555-1234', 'type': 'HOME'},
                       {'phone': '+1 (650) 555-1234', 'type': 'WORK', 'wa_id': '16505551234'}],
            'emails': [{'email': 'bjohnson@example.com', 'type': 'WORK'}],
        },
        {'name': {'formatted_name': 'Pablo Morales'}, 'phones': [{'wa_id': '5491123456789'}]},
    ]))
    assert event.contacts == (
        {'formatted_name': 'Barbara J. Johnson', 'phones': ('+1 (940) 555-1234', '+1 (650) 555-1234')},
        {'formatted_name': 'Pablo Morales', 'phones': ('5491123456789',)},
    )
    assert text_preview(event) == '[contacts] Barbara J. Johnson, Pablo Morales'


def test_interactive_button_reply():
    event = only_event(inbound(
        'interactive', context={'from': DISPLAY_NUMBER, 'id': 'wamid.OUTBOUND1'},
        interactive={'type': 'button_reply', 'button_reply': {'id': 'confirm-visit', 'title': 'Yes, book it'}},
    ))
    assert event.reply == webhook.Reply(kind='button_reply', id_or_payload='confirm-visit',
                                        title='Yes, book it', description=None)
    assert event.text == 'Yes, book it'
    assert event.context_wamid == 'wamid.OUTBOUND1'
    assert event.context_from == DISPLAY_NUMBER
    assert text_preview(event) == '[reply] Yes, book it'


def test_interactive_list_reply():
    event = only_event(inbound('interactive', interactive={
        'type': 'list_reply',
        'list_reply': {'id': 'plan-pro', 'title': 'Pro plan', 'description': '20 users, priority support'},
    }))
    assert event.reply == webhook.Reply(kind='list_reply', id_or_payload='plan-pro', title='Pro plan',
                                        description='20 users, priority support')


def test_interactive_flow_reply():
    event = only_event(inbound('interactive', interactive={
        'type': 'nfm_reply',
        'nfm_reply': {'name': 'flow', 'body': 'Sent', 'response_json': '{"flow_token": "T1", "budget": "10k"}'},
    }))
    assert event.reply.kind == 'nfm_reply'
    assert json.loads(event.reply.id_or_payload) == {'flow_token': 'T1', 'budget': '10k'}
    assert event.text == 'Sent'


def test_template_quick_reply_button():
    event = only_event(inbound(
        'button', context={'from': DISPLAY_NUMBER, 'id': 'wamid.TEMPLATE1'},
        button={'payload': 'STOP_PROMOTIONS', 'text': 'Stop promotions'},
    ))
    assert event.reply == webhook.Reply(kind='button', id_or_payload='STOP_PROMOTIONS',
                                        title='Stop promotions', description=None)
    assert event.text == 'Stop promotions'
    assert event.context_wamid == 'wamid.TEMPLATE1'


def test_reaction_and_its_removal():
    event = only_event(inbound('reaction', reaction={'message_id': 'wamid.OUTBOUND2', 'emoji': '\U0001F44D'}))
    assert event.reaction == webhook.Reaction(message_id='wamid.OUTBOUND2', emoji='\U0001F44D')
    assert event.text == '\U0001F44D'
    assert text_preview(event) == '[reaction] \U0001F44D'
    removed = only_event(inbound('reaction', wamid='wamid.R2', reaction={'message_id': 'wamid.OUTBOUND2'}))
    assert removed.reaction == webhook.Reaction(message_id='wamid.OUTBOUND2', emoji='')
    assert removed.text is None
    assert text_preview(removed) == '[reaction removed]'
    explicit = only_event(inbound('reaction', wamid='wamid.R3', reaction={'message_id': 'wamid.X', 'emoji': ''}))
    assert explicit.reaction.emoji == ''


def test_order_message():
    event = only_event(inbound('order', order={
        'catalog_id': '194836987003835', 'text': 'Please deliver before Friday',
        'product_items': [
            {'product_retailer_id': 'di9ozbzfi4', 'quantity': 2, 'item_price': 30, 'currency': 'USD'},
            {'product_retailer_id': 'nqryix03ez', 'quantity': 1, 'item_price': 25.5, 'currency': 'USD'},
        ],
    }))
    items = (
        {'product_retailer_id': 'di9ozbzfi4', 'quantity': 2, 'item_price': 30, 'currency': 'USD'},
        {'product_retailer_id': 'nqryix03ez', 'quantity': 1, 'item_price': 25.5, 'currency': 'USD'},
    )
    assert event.order == webhook.Order(catalog_id='194836987003835', text='Please deliver before Friday',
                                        product_items=items)
    assert text_preview(event) == '[order] 2 item(s): Please deliver before Friday'


def test_system_message_user_changed_number():
    # System messages carry no contacts array.
    payload = envelope(entry(messages_change([message('system', 'wamid.SYS1', system={
        'body': 'User Sheena Nelson changed from 16505551234 to 12195555358',
        'wa_id': '12195555358', 'type': 'user_changed_number',
    })])))
    event = only_event(payload)
    assert event.wa_id == WA_ID
    assert event.profile_name is None
    assert event.system == webhook.System(body='User Sheena Nelson changed from 16505551234 to 12195555358',
                                          new_wa_id='12195555358', new_user_id=None, type='user_changed_number')
    assert text_preview(event) == '[system] User Sheena Nelson changed from 16505551234 to 12195555358'


def test_unsupported_message_with_errors():
    event = only_event(inbound('unsupported', errors=[{
        'code': 131051, 'title': 'Message type unknown', 'message': 'Message type unknown',
        'error_data': {'details': 'Message type is currently not supported.'},
    }]))
    assert event.message_type == 'unsupported'
    assert event.errors == (webhook.MetaError(131051, 'Message type unknown', 'Message type unknown',
                                              'Message type is currently not supported.'),)
    assert event.errors[0].code == 131051
    assert text_preview(event) == '[unsupported] Message type unknown'


def test_click_to_whatsapp_ad_referral():
    event = only_event(inbound('text', text={'body': 'Is this still available?'}, referral={
        'source_url': 'https://fb.me/3cr4Wqqkv', 'source_id': '120226305854810726', 'source_type': 'ad',
        'headline': 'Spring sale', 'body': 'Two for one', 'media_type': 'image',
        'image_url': 'https://scontent.example/ad.jpg', 'ctwa_clid': 'ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0C',
    }))
    assert event.referral == webhook.Referral(
        source_url='https://fb.me/3cr4Wqqkv', source_id='120226305854810726', source_type='ad',
        headline='Spring sale', body='Two for one', media_type='image',
        ctwa_clid='ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0C',
    )
    assert event.text == 'Is this still available?'


def test_forwarded_message():
    event = only_event(inbound('text', text={'body': 'look at this'}, context={'forwarded': True}))
    assert event.is_forwarded is True
    assert event.context_wamid is None
    often = only_event(inbound('text', text={'body': 'chain'}, context={'frequently_forwarded': True}))
    assert often.is_forwarded is True


def test_unknown_message_type_is_kept():
    event = only_event(inbound('poll_vote', poll_vote={'option': 2}))
    assert isinstance(event, webhook.InboundMessage)
    assert event.message_type == 'poll_vote'
    assert text_preview(event) == '[poll_vote]'


# --- sender identity: phone number, BSUID or both ---------------------------------------------------

def test_sender_known_only_by_bsuid():
    payload = envelope(entry(messages_change(
        [message('text', 'wamid.BS1', sender=None, user_id=BSUID, text={'body': 'hi'})],
        contacts=[contact(name='Ana', wa_id=None, user_id=BSUID, username='@ana.designs')],
    )))
    event = only_event(payload)
    assert event.wa_id is None
    assert event.bsuid == BSUID
    assert event.profile_name == 'Ana'
    assert event.username == '@ana.designs'


def test_sender_with_phone_and_bsuid():
    payload = envelope(entry(messages_change(
        [message('text', 'wamid.BS2', user_id=BSUID, text={'body': 'hi'})],
        contacts=[contact(user_id=BSUID)],
    )))
    event = only_event(payload)
    assert (event.wa_id, event.bsuid, event.profile_name) == (WA_ID, BSUID, 'Sheena Nelson')


def test_bsuid_taken_from_contacts_when_message_has_only_from():
    payload = envelope(entry(messages_change(
        [message('text', 'wamid.BS3', text={'body': 'hi'})], contacts=[contact(user_id=BSUID)],
    )))
    assert only_event(payload).bsuid == BSUID


def test_profile_name_of_the_matching_contact():
    payload = envelope(entry(messages_change(
        [message('text', 'wamid.P1', sender='5491123456789', text={'body': 'a'}),
         message('text', 'wamid.P2', sender=None, user_id='AR.998877', text={'body': 'b'})],
        contacts=[contact(name='Someone else', wa_id='34600000001'),
                  contact(name='Pablo', wa_id='5491123456789'),
                  contact(name='Lucía', wa_id=None, user_id='AR.998877')],
    )))
    first, second = webhook.extract_events(payload)
    assert (first.wa_id, first.profile_name) == ('5491123456789', 'Pablo')
    assert (second.wa_id, second.bsuid, second.profile_name) == (None, 'AR.998877', 'Lucía')


def test_phone_sender_is_digits_only():
    event = only_event(inbound('text', sender='+1 650-555-1234', text={'body': 'x'}))
    assert event.wa_id == '16505551234'


# ---------------------------------------------------------------------------------------------------
# Statuses
# ---------------------------------------------------------------------------------------------------

def test_sent_status_with_conversation_and_pricing():
    event = only_event(envelope(entry(messages_change(statuses=[
        status('wamid.OUT1', 'sent', biz_opaque_callback_data='strato:42', **conversation_and_pricing()),
    ]))))
    assert isinstance(event, webhook.StatusUpdate)
    assert event.dedup_key == f'status:{PHONE_NUMBER_ID}:wamid.OUT1:sent'
    assert (event.wamid, event.status, event.timestamp) == ('wamid.OUT1', 'sent', TIMESTAMP_DT)
    assert event.recipient_id == WA_ID and event.recipient_bsuid is None
    assert event.conversation_id == 'CONVERSATION_ID_1'
    assert event.conversation_expiration == datetime(2025, 2, 13, 0, 43, 44)
    assert event.conversation_origin == 'service'
    assert event.pricing_billable is False
    assert (event.pricing_model, event.pricing_category, event.pricing_type) == ('PMP', 'service',
                                                                                 'free_customer_service')
    assert event.errors == ()
    assert event.biz_opaque_callback_data == 'strato:42'


def test_delivered_and_read_statuses():
    events = webhook.extract_events(envelope(entry(messages_change(statuses=[
        status('wamid.OUT1', 'delivered', conversation={'id': 'C1', 'origin': {'type': 'marketing'}},
               pricing={'billable': True, 'pricing_model': 'PMP', 'category': 'marketing', 'type': 'regular'}),
        status('wamid.OUT2', 'read'),
    ]))))
    delivered, read = events
    assert delivered.status == 'delivered' and delivered.pricing_billable is True
    assert delivered.conversation_expiration is None
    assert read.status == 'read' and read.conversation_id is None and read.pricing_billable is None
    assert delivered.dedup_key != read.dedup_key


def test_failed_status_with_errors():
    event = only_event(envelope(entry(messages_change(statuses=[status('wamid.OUT3', 'failed', errors=[{
        'code': 131047, 'title': 'Re-engagement message',
        'message': 'Re-engagement message',
        'error_data': {'details': 'Message failed to send because more than 24 hours have passed since '
                                  'the customer last replied to this number.'},
        'href': 'https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/',
    }])]))))
    assert event.status == 'failed'
    [error] = event.errors
    assert error.code == 131047
    assert error.title == 'Re-engagement message'
    assert error.details.startswith('Message failed to send')


def test_status_error_code_as_string_and_missing():
    event = only_event(envelope(entry(messages_change(statuses=[status('wamid.OUT4', 'failed', errors=[
        {'code': '131026', 'title': 'Message undeliverable'}, {'title': 'no code'}, 'junk',
    ])]))))
    assert [error.code for error in event.errors] == [131026, None]


def test_status_to_bsuid_recipient():
    event = only_event(envelope(entry(messages_change(
        statuses=[status('wamid.OUT5', 'delivered', recipient_id=None, recipient_user_id=BSUID)],
        contacts=[contact(wa_id=None, user_id=BSUID)],
    ))))
    assert event.recipient_id is None
    assert event.recipient_bsuid == BSUID


def test_status_bsuid_from_contacts():
    event = only_event(envelope(entry(messages_change(
        statuses=[status('wamid.OUT6', 'read')], contacts=[contact(user_id=BSUID)],
    ))))
    assert (event.recipient_id, event.recipient_bsuid) == (WA_ID, BSUID)


def test_other_meta_status_values_are_kept():
    events = webhook.extract_events(envelope(entry(messages_change(statuses=[
        status('wamid.OUT7', 'deleted'), status('wamid.OUT8', 'warning'), status('wamid.OUT9', 'played'),
    ]))))
    assert [event.status for event in events] == ['deleted', 'warning', 'played']


# ---------------------------------------------------------------------------------------------------
# Batches, routing, dedup
# ---------------------------------------------------------------------------------------------------

def batch_payload():
    second_number = '209876543210987'
    return envelope(
        entry(
            messages_change(
                [message('text', 'wamid.A1', text={'body': 'first'}),
                 message('image', 'wamid.A2', image={'id': '55', 'mime_type': 'image/png'})],
                statuses=[status('wamid.OUT1', 'delivered'), status('wamid.OUT1', 'read')],
                contacts=[contact()],
            ),
            messages_change([message('text', 'wamid.B1', sender='34600000001', text={'body': 'otro número'})],
                            contacts=[contact(name='Marta', wa_id='34600000001')],
                            phone_number_id=second_number),
        ),
        entry(
            messages_change(statuses=[status('wamid.OUT2', 'sent')]),
            template_change('message_template_status_update', event='APPROVED',
                            message_template_id=806312974732579, message_template_name='welcome',
                            message_template_language='en_US', reason='NONE'),
            waba_id='999888777666555', time=1739321030,
        ),
    )


def test_several_entries_changes_messages_and_statuses():
    events = webhook.extract_events(batch_payload())
    summary = [(type(event).__name__, getattr(event, 'wamid', None), event.phone_number_id, event.waba_id)
               for event in events]
    assert summary == [
        ('InboundMessage', 'wamid.A1', PHONE_NUMBER_ID, WABA_ID),
        ('InboundMessage', 'wamid.A2', PHONE_NUMBER_ID, WABA_ID),
        ('StatusUpdate', 'wamid.OUT1', PHONE_NUMBER_ID, WABA_ID),
        ('StatusUpdate', 'wamid.OUT1', PHONE_NUMBER_ID, WABA_ID),
        ('InboundMessage', 'wamid.B1', '209876543210987', WABA_ID),
        ('StatusUpdate', 'wamid.OUT2', PHONE_NUMBER_ID, '999888777666555'),
        ('TemplateStatusUpdate', None, None, '999888777666555'),
    ]
    assert events[4].profile_name == 'Marta'
    assert len({event.dedup_key for event in events}) == len(events)


def test_phone_number_ids_and_waba_ids():
    payload = batch_payload()
    assert webhook.phone_number_ids(payload) == [PHONE_NUMBER_ID, '209876543210987']
    assert webhook.waba_ids(payload) == [WABA_ID, '999888777666555']
    assert webhook.phone_number_ids({'object': 'whatsapp_business_account', 'entry': 'x'}) == []
    assert webhook.phone_number_ids(envelope({'changes': [{'value': {'metadata': 'x'}}]}, 7)) == []


def test_redelivery_gives_the_same_keys():
    first = [event.dedup_key for event in webhook.extract_events(batch_payload())]
    again = [event.dedup_key for event in webhook.extract_events(copy.deepcopy(batch_payload()))]
    assert first == again


def test_events_are_frozen_slotted_dataclasses():
    event = webhook.extract_events(batch_payload())[0]
    assert dataclasses.is_dataclass(event)
    assert not hasattr(event, '__dict__')
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = 'changed'


# ---------------------------------------------------------------------------------------------------
# Other fields on the same webhook
# ---------------------------------------------------------------------------------------------------

def test_template_status_update():
    event = only_event(envelope(entry(template_change(
        'message_template_status_update', event='REJECTED', message_template_id=806312974732579,
        message_template_name='spring_promo', message_template_language='es_AR', reason='INCORRECT_CATEGORY',
        message_template_category='MARKETING',
    ), time=1739321024)))
    assert isinstance(event, webhook.TemplateStatusUpdate)
    assert event.waba_id == WABA_ID and event.phone_number_id is None
    assert (event.template_id, event.name, event.language) == ('806312974732579', 'spring_promo', 'es_AR')
    assert (event.event, event.reason, event.category) == ('REJECTED', 'INCORRECT_CATEGORY', 'MARKETING')
    assert event.dedup_key.startswith('tpl_status:806312974732579:REJECTED:')


def test_template_event_repeated_later_is_not_a_duplicate():
    def approved(time):
        return envelope(entry(template_change(
            'message_template_status_update', event='APPROVED', message_template_id='806312974732579',
            message_template_name='welcome', message_template_language='en_US', reason='NONE',
        ), time=time))
    redelivered = only_event(approved(1739321024)).dedup_key
    assert redelivered == only_event(approved(1739321024)).dedup_key
    # approved, paused, approved again: the second approval must not be dropped as a redelivery
    assert redelivered != only_event(approved(1739500000)).dedup_key


def test_template_quality_update():
    event = only_event(envelope(entry(template_change(
        'message_template_quality_update', previous_quality_score='GREEN', new_quality_score='YELLOW',
        message_template_id=806312974732579, message_template_name='welcome', message_template_language='en_US',
    ), time=1739321024)))
    assert isinstance(event, webhook.TemplateQualityUpdate)
    assert (event.template_id, event.previous_quality_score, event.new_quality_score) == (
        '806312974732579', 'GREEN', 'YELLOW')
    assert event.dedup_key.startswith('tpl_quality:806312974732579:YELLOW:')


def test_template_category_update_completed_and_impending():
    done = only_event(envelope(entry(template_change(
        'template_category_update', message_template_id=806312974732579, message_template_name='welcome',
        message_template_language='en_US', previous_category='UTILITY', new_category='MARKETING',
    ))))
    assert isinstance(done, webhook.TemplateCategoryUpdate)
    assert (done.previous_category, done.new_category, done.correct_category) == ('UTILITY', 'MARKETING', None)
    impending = only_event(envelope(entry(template_change(
        'template_category_update', message_template_id=806312974732579, message_template_name='welcome',
        message_template_language='en_US', correct_category='MARKETING', new_category='UTILITY',
        category_update_timestamp=1739900000,
    ))))
    assert (impending.new_category, impending.correct_category) == ('UTILITY', 'MARKETING')
    assert impending.dedup_key != done.dedup_key


def test_value_errors():
    event = only_event(envelope(entry(messages_change(errors=[{
        'code': 131000, 'title': 'Something went wrong', 'message': 'Something went wrong',
        'error_data': {'details': 'Unknown error'},
    }]))))
    assert isinstance(event, webhook.WebhookErrors)
    assert event.phone_number_id == PHONE_NUMBER_ID
    assert event.errors == (webhook.MetaError(131000, 'Something went wrong', 'Something went wrong',
                                              'Unknown error'),)
    assert event.dedup_key.startswith(f'errors:{PHONE_NUMBER_ID}:')


def test_unknown_field_is_kept_as_unsupported_change():
    value = {'phone_number': DISPLAY_NUMBER, 'event': 'FLAGGED', 'current_limit': 'TIER_1K'}
    event = only_event(envelope(entry({'field': 'phone_number_quality_update', 'value': value})))
    assert isinstance(event, webhook.UnsupportedChange)
    assert event.field == 'phone_number_quality_update'
    assert event.raw == value
    assert event.dedup_key.startswith('change:phone_number_quality_update:')


# ---------------------------------------------------------------------------------------------------
# Malformed items next to valid ones
# ---------------------------------------------------------------------------------------------------

def test_malformed_messages_and_statuses_do_not_hide_valid_ones():
    no_id = message('text', None, text={'body': 'lost id'})
    del no_id['id']
    bad_time = message('text', 'wamid.T', text={'body': 'x'})
    bad_time['timestamp'] = 'yesterday'
    no_sender = message('text', 'wamid.NS', sender=None, text={'body': 'who?'})
    no_type = message('text', 'wamid.NT')
    del no_type['type']
    payload = envelope(entry(messages_change(
        [no_id, message('text', 'wamid.GOOD1', text={'body': 'ok'}), bad_time, 'not a message', no_sender,
         no_type],
        statuses=[status('wamid.OUT1', 42), status('wamid.OUT2', 'delivered'), status('wamid.OUT3', 'Read!'),
                  status(None, 'sent')],
    )))
    events = webhook.extract_events(payload)
    kinds = [(type(event).__name__, getattr(event, 'wamid', None)) for event in events]
    assert kinds == [
        ('InvalidItem', None), ('InboundMessage', 'wamid.GOOD1'), ('InvalidItem', None), ('InvalidItem', None),
        ('InvalidItem', None), ('InvalidItem', None),
        ('InvalidItem', None), ('StatusUpdate', 'wamid.OUT2'), ('InvalidItem', None), ('InvalidItem', None),
    ]
    reasons = [event.reason for event in events if isinstance(event, webhook.InvalidItem)]
    assert reasons == [
        'message has no "id"', 'message has no valid "timestamp"', 'message is not an object',
        'message has no sender ("from" / "from_user_id")', 'message has no "type"',
        'status has no valid "status" value', 'status has no valid "status" value', 'status has no "id"',
    ]
    invalid = events[0]
    assert invalid.raw is payload['entry'][0]['changes'][0]['value']['messages'][0]
    assert (invalid.kind, invalid.phone_number_id, invalid.waba_id) == ('message', PHONE_NUMBER_ID, WABA_ID)
    assert invalid.dedup_key.startswith('invalid:message:')


def test_malformed_entries_and_changes_do_not_hide_valid_ones():
    good = messages_change([message('text', 'wamid.GOOD2', text={'body': 'ok'})])
    no_metadata = messages_change([message('text', 'wamid.ORPHAN', text={'body': 'where to?'})])
    del no_metadata['value']['metadata']
    payload = envelope(
        'not an entry',
        {'id': WABA_ID, 'changes': 'nope'},
        entry(['a change?'], {'value': {}}, {'field': 'messages', 'value': None}, no_metadata,
              {'field': 'messages', 'value': {'metadata': {'phone_number_id': PHONE_NUMBER_ID},
                                              'messages': {'id': 'x'}}},
              template_change('message_template_status_update', event='APPROVED'),
              template_change('message_template_quality_update', message_template_id=1),
              good),
    )
    events = webhook.extract_events(payload)
    assert [type(event).__name__ for event in events] == ['InvalidItem'] * 9 + ['InboundMessage']
    assert [event.reason for event in events[:9]] == [
        'entry is not an object', 'entry has no "changes" list', 'change is not an object',
        'change has no "field"', '"messages" change has no "value" object',
        'messages change has no metadata.phone_number_id', '"messages" is not a list',
        'template update has no "message_template_id"', 'template update has no "new_quality_score"',
    ]
    assert events[-1].wamid == 'wamid.GOOD2'


def test_odd_values_are_read_leniently():
    event = only_event(inbound(
        'interactive', interactive={'type': ['button_reply'], 'button_reply': {'id': 1}},
        context='not a dict', referral=['x'], errors='none',
    ))
    assert isinstance(event, webhook.InboundMessage)
    assert (event.reply, event.context_wamid, event.referral, event.errors) == (None, None, None, ())


def test_timestamp_variants():
    as_number = message('text', 'wamid.N1', text={'body': 'x'})
    as_number['timestamp'] = 1739321024
    too_big = message('text', 'wamid.N2', text={'body': 'x'})
    too_big['timestamp'] = '999999999999'
    negative = message('text', 'wamid.N3', text={'body': 'x'})
    negative['timestamp'] = -5
    events = webhook.extract_events(envelope(entry(messages_change([as_number, too_big, negative]))))
    assert events[0].timestamp == TIMESTAMP_DT
    assert [type(event).__name__ for event in events[1:]] == ['InvalidItem', 'InvalidItem']


# ---------------------------------------------------------------------------------------------------
# Body parsing
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('body, reason', [
    (b'\xff\xfe{"object": 1}', 'body is not UTF-8'),
    (b'{"object": "whatsapp_business_account", "entry": [', 'body is not valid JSON'),
    (b'', 'body is not valid JSON'),
    (b'{"object": "whatsapp_business_account", "entry": [], "x": NaN}', 'body is not valid JSON'),
    (b'[' * 100000 + b']' * 100000, 'body is not valid JSON'),
    (b'[{"object": "whatsapp_business_account"}]', 'body is not a JSON object'),
    (b'"whatsapp_business_account"', 'body is not a JSON object'),
    (b'{"object": "page", "entry": []}', '"object" is not "whatsapp_business_account"'),
    (b'{"entry": []}', '"object" is not "whatsapp_business_account"'),
    (b'{"object": "whatsapp_business_account"}', '"entry" is not a list'),
    (b'{"object": "whatsapp_business_account", "entry": {"id": "1"}}', '"entry" is not a list'),
])
def test_parse_body_rejects(body, reason):
    with pytest.raises(webhook.WebhookPayloadError) as caught:
        webhook.parse_body(body)
    assert str(caught.value) == reason


def test_parse_body_accepts_an_envelope():
    body = json.dumps(batch_payload(), ensure_ascii=False).encode()
    assert webhook.parse_body(body) == batch_payload()
    assert webhook.parse_body(b'\xef\xbb\xbf' + body) == batch_payload()
    assert webhook.parse_body(b'{"object": "whatsapp_business_account", "entry": []}')['entry'] == []


def test_extract_events_checks_the_envelope():
    with pytest.raises(webhook.WebhookPayloadError):
        webhook.extract_events(['not', 'a', 'payload'])
    assert webhook.extract_events({'object': 'whatsapp_business_account', 'entry': []}) == []


# ---------------------------------------------------------------------------------------------------
# Signature
# ---------------------------------------------------------------------------------------------------

def test_signature_right():
    body = json.dumps(batch_payload()).encode()
    assert webhook.signature_is_valid(body, sign(body), APP_SECRET) is True
    assert webhook.signature_is_valid(body, sign(body).upper().replace('SHA256=', 'sha256='), APP_SECRET)


def test_signature_wrong_secret_or_altered_body():
    body = json.dumps(batch_payload()).encode()
    header = sign(body)
    assert webhook.signature_is_valid(body, header, 'another-secret') is False
    assert webhook.signature_is_valid(body.replace(b'first', b'frist'), header, APP_SECRET) is False
    # Same JSON, other bytes: the signature is over the bytes, not the data.
    reserialized = json.dumps(json.loads(body), indent=1).encode()
    assert webhook.signature_is_valid(reserialized, header, APP_SECRET) is False


@pytest.mark.parametrize('header', [
    None, '', 'sha256=', 'sha1=0123456789abcdef0123456789abcdef01234567', 'sha256=zz' + '0' * 62,
    'sha256=' + '0' * 63, 'md5=abc', 42,
])
def test_signature_missing_or_malformed_header(header):
    assert webhook.signature_is_valid(b'{}', header, APP_SECRET) is False


def test_signature_needs_a_secret():
    body = b'{"object": "whatsapp_business_account", "entry": []}'
    assert webhook.signature_is_valid(body, sign(body, ''), '') is False
    assert webhook.signature_is_valid(body, sign(body), None) is False


# ---------------------------------------------------------------------------------------------------
# Presentation helpers
# ---------------------------------------------------------------------------------------------------

def test_map_link():
    assert webhook.map_link(48.8584, 2.2945) == 'https://www.google.com/maps/search/?api=1&query=48.8584,2.2945'
    assert webhook.map_link('-34.6037', '-58.3816').endswith('query=-34.6037,-58.3816')
    assert webhook.map_link(0, 0).endswith('query=0,0')
    for latitude, longitude in ((91, 0), (0, 181), ('north', 0), (float('nan'), 0), (None, 1), (True, 1)):
        with pytest.raises(ValueError):
            webhook.map_link(latitude, longitude)


def test_text_preview_is_one_short_line():
    event = only_event(inbound('text', text={'body': 'line one\n\nline two\t' + 'x' * 500}))
    preview = text_preview(event)
    assert '\n' not in preview and preview.startswith('line one line two x')
    assert len(preview) == 200 and preview.endswith('…')
    status_event = only_event(envelope(entry(messages_change(statuses=[status('wamid.S', 'sent')]))))
    assert text_preview(status_event) == '[StatusUpdate]'


# ---------------------------------------------------------------------------------------------------
# Property tests: mutated and arbitrary payloads
# ---------------------------------------------------------------------------------------------------

def _fixture_payloads():
    """Valid envelopes, one per kind of item, every message with its own wamid."""
    media = {'id': '4242', 'mime_type': 'image/jpeg', 'sha256': 's='}
    return [
        inbound('text', wamid='wamid.F1', text={'body': 'hi'}),
        inbound('image', wamid='wamid.F2', image=dict(media, caption='c')),
        inbound('audio', wamid='wamid.F3', audio=dict(media, voice=True)),
        inbound('document', wamid='wamid.F4', document=dict(media, filename='a.pdf')),
        inbound('location', wamid='wamid.F5', location={'latitude': 1.5, 'longitude': 2.5, 'name': 'N'}),
        inbound('contacts', wamid='wamid.F6',
                contacts=[{'name': {'formatted_name': 'A'}, 'phones': [{'phone': '1'}]}]),
        inbound('interactive', wamid='wamid.F7',
                interactive={'type': 'list_reply', 'list_reply': {'id': 'i', 'title': 't'}}),
        inbound('button', wamid='wamid.F8', button={'payload': 'P', 'text': 'T'},
                context={'id': 'wamid.O', 'from': '1'}),
        inbound('reaction', wamid='wamid.F9', reaction={'message_id': 'wamid.O', 'emoji': ':)'}),
        inbound('order', wamid='wamid.F10',
                order={'catalog_id': '1', 'product_items': [{'product_retailer_id': 'x', 'quantity': 1}]}),
        inbound('unsupported', wamid='wamid.F11', errors=[{'code': 131051, 'title': 'Unsupported'}]),
        inbound('text', wamid='wamid.F12', text={'body': 'ad'}, referral={'source_url': 'u', 'ctwa_clid': 'c'}),
        envelope(entry(messages_change([message('system', 'wamid.F13', system={'body': 'b', 'wa_id': '2'})]))),
        envelope(entry(messages_change(
            [message('text', 'wamid.F14', sender=None, user_id=BSUID, text={'body': 'bsuid'}),
             message('sticker', 'wamid.F15', sender='34600000001', sticker=dict(media, animated=True))],
            statuses=[status('wamid.OUT1', 'failed', errors=[{'code': 131026}]),
                      status('wamid.OUT2', 'read', **conversation_and_pricing())],
            contacts=[contact(wa_id=None, user_id=BSUID), contact(name='M', wa_id='34600000001')],
            errors=[{'code': 131000}],
        ), messages_change([message('text', 'wamid.F16', text={'body': 'second number'})],
                           phone_number_id='2098765'))),
        envelope(entry(template_change('message_template_status_update', event='PAUSED', message_template_id=7,
                                       message_template_name='t', message_template_language='en'),
                       template_change('message_template_quality_update', new_quality_score='RED',
                                       message_template_id=7),
                       template_change('template_category_update', new_category='MARKETING',
                                       message_template_id=7),
                       {'field': 'account_alerts', 'value': {'entity_id': '1'}}, time=1)),
    ]


_FIXTURES = _fixture_payloads()

_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12), st.just(''),
    st.sampled_from(['wamid.F1', '16505551234', 'US.1', 'text', 'messages', '1739321024', '9' * 20]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
_INJECTED_KEYS = ['id', 'type', 'from', 'from_user_id', 'timestamp', 'metadata', 'field', 'value', 'messages',
                  'statuses', 'contacts', 'errors', 'status', 'text', 'image', 'context', 'zz_junk']


def _paths(node, prefix=()):
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, prefix + (key,))


def _message_paths(payload):
    """{wamid: path} of every message of a valid fixture combination."""
    found = {}
    for i, entry_ in enumerate(payload['entry']):
        for j, change in enumerate(entry_['changes']):
            for k, item in enumerate(change['value'].get('messages', ()) if change['field'] == 'messages' else ()):
                found[item['id']] = ('entry', i, 'changes', j, 'value', 'messages', k)
    return found


def _touches(path, other):
    shortest = min(len(path), len(other))
    return path[:shortest] == other[:shortest]


def _breaks_message(path, message_path):
    """Whether a mutation at ``path`` may make that message invalid: the message itself, an
    ancestor, or what it depends on (its change's field and metadata)."""
    change = message_path[:4]
    return any(_touches(path, dependency)
               for dependency in (message_path, change + ('field',), change + ('value', 'metadata')))


def _mutate(tree, path, operation, junk, injected_key):
    """Apply one mutation in place; returns the new root and the path actually touched."""
    if not path:
        return junk, path
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    node = parent[key]
    if operation == 'drop':
        del parent[key]
    elif operation == 'truncate' and isinstance(node, (str, list)):
        parent[key] = node[:len(node) // 2]
    elif operation == 'truncate' and isinstance(node, dict):
        parent[key] = dict(list(node.items())[:len(node) // 2])
    elif operation == 'retype':
        parent[key] = _retyped(node)
    elif operation == 'inject' and isinstance(node, dict):
        node[injected_key] = junk
        return tree, path + (injected_key,)
    else:
        parent[key] = junk
    return tree, path


def _retyped(node):
    if isinstance(node, str):
        return int(node) if node.isascii() and node.isdigit() and len(node) < 30 else [node]
    if isinstance(node, bool):
        return str(node).lower()
    if isinstance(node, (int, float)):
        return str(node)
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return {str(index): value for index, value in enumerate(node)}
    return 'null'


def _path_order(path):
    return tuple((0, key, '') if isinstance(key, int) else (1, 0, key) for key in path)


def _check_events(events):
    for event in events:
        assert isinstance(event, webhook.WebhookEvent), event
        assert isinstance(event.dedup_key, str) and event.dedup_key
        assert not hasattr(event, '__dict__')
        assert isinstance(text_preview(event), str)
        if isinstance(event, webhook.InvalidItem):
            assert not event.reason.startswith('unreadable'), event.reason  # the safety net never fires
        if isinstance(event, webhook.InboundMessage):
            assert isinstance(event.timestamp, datetime)
            assert event.wa_id is None or event.wa_id.isdigit()
            assert event.wa_id or event.bsuid
            assert event.dedup_key == f'msg:{event.phone_number_id}:{event.wamid}'


_PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None,
                              suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY_SETTINGS
@given(data=st.data())
def test_mutated_payloads_keep_every_still_valid_message(data):
    chosen = data.draw(st.lists(st.sampled_from(range(len(_FIXTURES))), min_size=1, max_size=4, unique=True))
    payload = envelope(*(entry_ for index in chosen for entry_ in copy.deepcopy(_FIXTURES[index])['entry']))
    originals = {event.wamid: event for event in webhook.extract_events(payload)
                 if isinstance(event, webhook.InboundMessage)}
    message_paths = _message_paths(payload)
    assert set(originals) == set(message_paths)

    all_paths = list(_paths(payload))
    targets = data.draw(st.lists(st.sampled_from(all_paths), min_size=1, max_size=4, unique=True))
    touched = []
    tree = payload
    # Deepest / rightmost first, so earlier mutations never move the paths of later ones.
    for path in sorted(targets, key=_path_order, reverse=True):
        operation = data.draw(st.sampled_from(['drop', 'junk', 'truncate', 'retype', 'inject']))
        junk = data.draw(_JUNK)
        injected_key = data.draw(st.sampled_from(_INJECTED_KEYS))
        tree, actual = _mutate(tree, path, operation, junk, injected_key)
        touched.append(actual)
    body = json.dumps(tree).encode()
    if data.draw(st.integers(0, 9), label='truncate the body instead') == 0:
        with pytest.raises(webhook.WebhookPayloadError):
            webhook.parse_body(body[:data.draw(st.integers(0, len(body) - 1))])
        return

    try:
        parsed = webhook.parse_body(body)
    except webhook.WebhookPayloadError:
        assert any(len(path) <= 1 for path in touched), touched  # only the envelope itself can fail it
        return
    events = webhook.extract_events(parsed)
    _check_events(events)
    webhook.phone_number_ids(parsed)
    produced = {event.wamid: event for event in events if isinstance(event, webhook.InboundMessage)}
    still_valid = {wamid for wamid, path in message_paths.items()
                   if not any(_breaks_message(mutation, path) for mutation in touched)}
    assert still_valid <= set(produced), (still_valid - set(produced), touched)
    for wamid in still_valid:
        before, after = originals[wamid], produced[wamid]
        for name in ('dedup_key', 'timestamp', 'message_type', 'text', 'media', 'location', 'reply',
                     'reaction', 'order', 'system', 'referral', 'context_wamid', 'errors'):
            assert getattr(after, name) == getattr(before, name), name


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(_INJECTED_KEYS + ['body', 'wa_id', 'user_id', 'profile', 'name', 'latitude'])
        | st.text(max_size=4),
        children, max_size=5),
    max_leaves=30,
)


@_PROPERTY_SETTINGS
@given(entries=st.lists(_JSON, max_size=3), value=_JSON, items=st.lists(_JSON, max_size=4),
       field=st.sampled_from(['messages', 'message_template_status_update', 'message_template_quality_update',
                              'template_category_update', 'account_update']),
       msg_type=st.sampled_from(['text', 'image', 'location', 'contacts', 'interactive', 'button', 'reaction',
                                 'order', 'system', 'unsupported']))
def test_arbitrary_json_inside_an_envelope_never_raises(entries, value, items, field, msg_type):
    typed_items = [message(msg_type, f'wamid.J{index}', **{msg_type: item}) for index, item in enumerate(items)]
    change_value = value if isinstance(value, dict) else {'junk': value}
    change_value = dict(change_value, metadata={'phone_number_id': PHONE_NUMBER_ID}, messages=typed_items + items,
                        statuses=items, contacts=items)
    payload = envelope(*entries, entry({'field': field, 'value': change_value}, {'field': field, 'value': value}))
    events = webhook.extract_events(webhook.parse_body(json.dumps(payload).encode()))
    _check_events(events)
    if field == 'messages':
        # typed items only vary their content: each one is still a message
        produced = {event.wamid for event in events if isinstance(event, webhook.InboundMessage)}
        assert {item['id'] for item in typed_items} <= produced


@_PROPERTY_SETTINGS
@given(body=st.one_of(st.binary(max_size=200), _JSON.map(lambda value: json.dumps(value).encode())))
def test_parse_body_raises_only_payload_errors(body):
    try:
        payload = webhook.parse_body(body)
    except webhook.WebhookPayloadError as error:
        assert str(error)
    else:
        _check_events(webhook.extract_events(payload))


# Odoo's runner and pytest-odoo both run these, as one class (see unit_cases).
TestWebhookParsing = unit_cases.gather("TestWebhookParsing", globals())
