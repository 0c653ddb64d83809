"""Play the customer in the demo: send an inbound WhatsApp message to Odoo through the simulator.

    python devtools/demo_say.py "Hola, ¿sigue disponible el piso?"
    python devtools/demo_say.py --from 5491123456789 --name "Martín" "¿Acepta mascotas?"
    python devtools/demo_say.py --from 34611222333 --name "Nuevo cliente" "Busco piso en Madrid"

The message is signed with the demo account's app secret and posted to Odoo's webhook by the running
simulator, exactly as Meta would; Odoo stores it, finds or creates the lead, and shows it on the lead.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from graph_simulator import payloads  # noqa: E402
from graph_simulator.control import ControlClient  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text")
    parser.add_argument("--from", dest="wa_id", default="34600000001", help="the sender's WhatsApp id (digits)")
    parser.add_argument("--name", default="Lucía", help="the sender's WhatsApp profile name")
    parser.add_argument("--odoo", default="http://127.0.0.1:8069", help="Odoo's base URL")
    parser.add_argument("--simulator", default="http://127.0.0.1:8899")
    arguments = parser.parse_args(argv)
    payload = payloads.inbound_message(payloads.DEFAULT_PHONE_NUMBER_ID, payloads.DEFAULT_DISPLAY_PHONE_NUMBER,
                                       arguments.wa_id, arguments.name, body=arguments.text)
    status, body = ControlClient(arguments.simulator).post_webhook(
        arguments.odoo.rstrip("/") + "/api/webhooks/whatsapp", payload)
    print(f"Odoo answered {status}: {body[:200]}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
