from odoo import api, fields, models

from .. import const

# How a WhatsApp message's state reads in Odoo's delivery icons (the ones e-mail and SMS show).
NOTIFICATION_STATUS = {
    const.STATE_QUEUED: "ready",
    const.STATE_SENDING: "process",
    const.STATE_SENT: "pending",
    const.STATE_DELIVERED: "sent",
    const.STATE_READ: "sent",
    const.STATE_FAILED: "exception",
    const.STATE_UNKNOWN: "exception",
    const.STATE_CANCELLED: "canceled",
}


class MailNotification(models.Model):
    """WhatsApp delivery status on the chatter note of an outbound message, shown the way Odoo shows it
    for e-mail and SMS (icon, status, failure reason, the failures menu), and updated live."""

    _inherit = "mail.notification"

    notification_type = fields.Selection(selection_add=[("whatsapp", "WhatsApp")], ondelete={"whatsapp": "cascade"})
    strato_whatsapp_message_id = fields.Many2one(
        "strato.whatsapp.message", "WhatsApp Message", index="btree_not_null", ondelete="cascade")
    failure_type = fields.Selection(selection_add=[
        ("whatsapp_window_closed", "WhatsApp: reply window closed"),
        ("whatsapp_opted_out", "WhatsApp: contact opted out"),
        ("whatsapp_invalid_number", "WhatsApp: no valid number"),
        ("whatsapp_template", "WhatsApp: template problem"),
        ("whatsapp_recipient", "WhatsApp: recipient unreachable"),
        ("whatsapp_parameter", "WhatsApp: invalid content"),
        ("whatsapp_account", "WhatsApp: number blocked"),
        ("whatsapp_retries_exhausted", "WhatsApp: too many failed attempts"),
        ("whatsapp_outcome_unknown", "WhatsApp: outcome unknown"),
        ("whatsapp_unknown", "WhatsApp: other error"),
    ])

    def _filtered_for_web_client(self):
        # Shown whatever the recipient: a WhatsApp contact often has no partner, and the agent wants the
        # ticks of every message they sent.
        return super()._filtered_for_web_client() | self.filtered(
            lambda notification: notification.notification_type == "whatsapp")

    @api.model
    def _strato_whatsapp_values(self, message):
        """What the notification of ``message`` says now."""
        if message.state == const.STATE_UNKNOWN:
            failure_type = "whatsapp_outcome_unknown"
        elif message.state == const.STATE_FAILED:
            failure_type = f"whatsapp_{message.failure_type or 'unknown'}"
        else:
            failure_type = False
        return {
            "notification_status": NOTIFICATION_STATUS.get(message.state, "ready"),
            "failure_type": failure_type,
            "failure_reason": (message.error_message or False) if failure_type else False,
        }

    def _strato_whatsapp_send_live(self):
        """Tell the authors' web clients the new status of these notifications: the same "record insert"
        the chatter applies for any notification, with only the fields that changed. Mail's
        ``_notify_message_notification_update`` would send whole messages again, which costs more than
        the send loop's own work for a batch of messages."""
        by_author = {}
        for notification in self.filtered("author_id"):
            by_author.setdefault(notification.author_id, []).append({
                "id": notification.id,
                "notification_type": notification.notification_type,
                "notification_status": notification.notification_status,
                "failure_type": notification.failure_type,
                "message": notification.mail_message_id.id,
            })
        for author, values in by_author.items():
            author._bus_send("mail.record/insert", {"mail.notification": values})
