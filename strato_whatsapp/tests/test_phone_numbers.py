"""The phone helpers on their own: no database."""
from odoo.tests import tagged
from odoo.tests.common import BaseCase

from ..tools import phone

TO_E164_CASES = [
    ("5491123456789", None, "+5491123456789"),        # a WhatsApp id typed as is
    ("+54 9 11 2345-6789", None, "+5491123456789"),
    ("011 15 2345-6789", "AR", "+5491123456789"),      # Argentine national mobile format
    ("11 2345-6789", "AR", "+541123456789"),           # Buenos Aires landline format
    ("+34 600 00 00 01", None, "+34600000001"),
    ("600 00 00 01", "ES", "+34600000001"),            # Spanish national format
    ("0034 600000001", "ES", "+34600000001"),
    ("34600000001", "AR", "+34600000001"),             # international digits without '+'
    ("600 12", "ES", None),                            # too short
    ("not a number", "ES", None),
    ("", "ES", None),
    (None, None, None),
]


@tagged("post_install", "-at_install")
class TestPhoneHelpers(BaseCase):
    """Seen by Odoo's own test runner and by pytest alike."""

    def test_to_e164(self):
        for number, country, expected in TO_E164_CASES:
            assert phone.to_e164(number, country) == expected, (number, country)

    def test_argentine_mobile_forms_share_a_match_key(self):
        keys = {
            phone.match_key("5491123456789"),                 # wa_id as Meta sends it
            phone.match_key(phone.to_e164("011 15 2345-6789", "AR")),
            phone.match_key(phone.to_e164("11 2345-6789", "AR")),
        }
        assert keys == {"541123456789"}

    def test_mexican_and_brazilian_mobile_markers_are_folded(self):
        assert phone.match_key("5215512345678") == phone.match_key("+525512345678") == "525512345678"
        assert phone.match_key("5511912345678") == "551112345678"

    def test_spanish_match_key_is_plain_digits(self):
        assert phone.match_key("+34600000001") == "34600000001"
        assert phone.match_key("") is None

    def test_wa_id_round_trip(self):
        assert phone.e164_from_wa_id("34600000001") == "+34600000001"
        assert phone.wa_id_from_e164("+34600000001") == "34600000001"
        assert phone.e164_from_wa_id("123") is None
