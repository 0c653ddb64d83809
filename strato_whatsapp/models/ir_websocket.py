import re

from odoo import models

LEAD_CHANNEL = re.compile(r"^strato_whatsapp_lead_(\d+)$")
# The subchannel of a lead that its open chat panels listen to.
CHAT_SUBCHANNEL = "strato_whatsapp"


class IrWebsocket(models.AbstractModel):
    """Let an open chat panel listen to its lead, if the user may read the lead's WhatsApp messages."""

    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        others, lead_channels = self._strato_whatsapp_lead_channels(channels)
        return super()._build_bus_channel_list(others + lead_channels)

    def _strato_whatsapp_lead_channels(self, channels):
        """(the channels that are not chat panels', the leads' chat channels this user may hear)."""
        others, lead_ids = [], []
        for channel in channels:
            match = isinstance(channel, str) and LEAD_CHANNEL.match(channel)
            if match:
                lead_ids.append(int(match[1]))
            else:
                others.append(channel)
        if not (lead_ids and self.env.uid and self.env.user.has_group("strato_whatsapp.group_whatsapp_user")):
            return others, []
        leads = self.env["crm.lead"].with_context(active_test=False).search([("id", "in", lead_ids)])
        return others, [(lead, CHAT_SUBCHANNEL) for lead in leads]
