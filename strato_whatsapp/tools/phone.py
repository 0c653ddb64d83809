"""Phone numbers as WhatsApp sees them. Pure functions, no ORM.

Meta identifies a user by ``wa_id``: the digits of the E.164 number without '+'. Agents type numbers in
any format, usually national ones, so leads store an E.164 form and a *match key*. The key folds the
mobile markers that some countries put in the international form but that WhatsApp ids may lack or keep
(Argentina's 9, Mexico's 1, Brazil's ninth digit), so the lead typed "011 15 2345-6789" and the
``wa_id`` "5491123456789" meet on one indexed value.
"""
import phonenumbers

_NUMBER_TYPES_THAT_CANNOT_CHAT = (
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.PAGER,
)


def to_e164(number, country_code=None):
    """Return ``number`` as E.164 ('+34600000001'), or None when it is missing or not a valid number.

    ``country_code`` (ISO alpha-2, e.g. 'ES', 'AR') is the region used for national formats.
    """
    if not number or not isinstance(number, str):
        return None
    region = country_code.upper() if country_code else None
    parsed = _parse_valid(number.strip(), region)
    if parsed is None and not number.strip().startswith('+'):
        # "5491123456789": international digits typed without the '+', as WhatsApp shows them.
        parsed = _parse_valid('+' + digits(number), None)
    if parsed is None or phonenumbers.number_type(parsed) in _NUMBER_TYPES_THAT_CANNOT_CHAT:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _parse_valid(number, region):
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


def digits(number):
    """Only the digits of ``number`` (a wa_id from an E.164 string)."""
    return ''.join(ch for ch in number or '' if ch.isdigit())


def wa_id_from_e164(e164):
    return digits(e164) or None


def e164_from_wa_id(wa_id):
    """The E.164 form of a wa_id, or None when the digits do not form a valid number."""
    wa_digits = digits(wa_id)
    return to_e164('+' + wa_digits) if wa_digits else None


def match_key(number):
    """The value leads and senders are matched on: E.164 digits with country mobile markers folded.

    Accepts an E.164 string or a wa_id; returns None for an empty input.
    """
    key = digits(number)
    if not key:
        return None
    if key.startswith('549') and len(key) == 13:
        return '54' + key[3:]
    if key.startswith('521') and len(key) == 13:
        return '52' + key[3:]
    if key.startswith('55') and len(key) == 13 and key[4] == '9':
        return key[:4] + key[5:]
    return key


def format_international(e164):
    """'+34 600 00 00 01' for display; the input unchanged when it cannot be parsed."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
