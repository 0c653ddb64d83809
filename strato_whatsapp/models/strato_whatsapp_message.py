import logging
import mimetypes
import random
import threading
import time
from collections import deque
from datetime import timedelta

import psycopg2
from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.addons.base_automation.models.base_automation import CREATE_TRIGGERS
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL
from odoo.tools.mail import plaintext2html
from odoo.tools.sql import create_index

from .. import const
from ..tools import graph_errors, graph_payloads, phone, send_pool, webhook
from ..tools.throttle import PairSpacing, Throttle

_logger = logging.getLogger(__name__)

# Our message id travels to Meta in biz_opaque_callback_data and comes back on every status, so a
# status that beats the send transaction's commit can still find its message.
CALLBACK_PREFIX = "swa:"


MEDIA_STATES = [
    ("none", "No Media"),
    ("pending", "To Download"),
    ("done", "Downloaded"),
    ("failed", "Download Failed"),
    ("too_large", "Too Large"),
]

DEFAULT_MEDIA_MAX_BYTES = 25 * 1024 * 1024
MEDIA_BATCH_SIZE = 20

DEFAULT_OPT_OUT_KEYWORDS = "STOP,BAJA"
DEFAULT_OPT_IN_KEYWORDS = "START,ALTA"
# The quick reply Meta adds to marketing templates ("Marketing opt-out" button), as the contact's
# language shows it: pressing it is the contact's STOP for marketing.
MARKETING_STOP_BUTTONS = frozenset({"STOP PROMOTIONS", "DETENER PROMOCIONES", "PARAR PROMOCIONES",
                                    "NO RECIBIR PROMOCIONES"})

MESSAGE_TYPES = [
    ("text", "Text"),
    ("image", "Image"),
    ("video", "Video"),
    ("audio", "Audio"),
    ("document", "Document"),
    ("sticker", "Sticker"),
    ("location", "Location"),
    ("contacts", "Contacts"),
    ("interactive", "Interactive"),
    ("button", "Button Reply"),
    ("reaction", "Reaction"),
    ("template", "Template"),
    ("order", "Order"),
    ("system", "System"),
    ("unsupported", "Unsupported"),
]

MESSAGE_STATES = [
    (const.STATE_QUEUED, "Queued"),
    (const.STATE_SENDING, "Sending"),
    (const.STATE_SENT, "Sent"),
    (const.STATE_DELIVERED, "Delivered"),
    (const.STATE_READ, "Read"),
    (const.STATE_FAILED, "Failed"),
    (const.STATE_RECEIVED, "Received"),
    (const.STATE_UNKNOWN, "Outcome Unknown"),
    (const.STATE_CANCELLED, "Cancelled"),
]
assert [state for state, _label in MESSAGE_STATES] == list(const.MESSAGE_STATES)

FAILURE_TYPES = [
    ("window_closed", "Reply Window Closed"),
    ("opted_out", "Contact Opted Out"),
    ("invalid_number", "No Valid Number"),
    ("template", "Template Problem"),
    ("recipient", "Recipient Unreachable"),
    ("parameter", "Invalid Content"),
    ("account", "Account Blocked"),
    ("retries_exhausted", "Too Many Failed Attempts"),
    ("unknown", "Other Error"),
]
# Hours during which an automation does not send the same template (or text) to a number again.
DEFAULT_REPEAT_HOURS = 24
SEND_BATCH_SIZE = 50
# Meta counts a number's throughput as its calls arrive; the throttle's window is this much longer than
# a second so that thread scheduling between the throttle and the wire cannot squeeze one more call in.
THROTTLE_WINDOW_SECONDS = 1.01
SEND_TIME_BUDGET = 50  # seconds per cron run and account; the run re-triggers itself while work remains
STALE_SENDING_AFTER = timedelta(minutes=2)
# The account lock: held by the sending worker's session across its commits, released when it is done
# with the account, or with the connection if the worker dies.
ADVISORY_LOCK_NAMESPACE = 0x57A7
READ_RECEIPT_STATES = [
    ("pending", "To Send"),
    ("done", "Sent"),
    ("failed", "Failed"),
]
READ_RECEIPT_BATCH_SIZE = 100
READ_RECEIPT_MAX_ATTEMPTS = 5
# A change to any of these redraws the message in open chat panels.
CHAT_VISIBLE_FIELDS = frozenset({"state", "reaction_emoji", "attachment_ids", "media_state", "body", "lead_id"})


class StratoWhatsappMessage(models.Model):
    """One WhatsApp message, received or sent, and where it stands.

    Sent messages go through the send queue: queued -> sending -> sent (wamid stored) | failed (code,
    text) | queued again later (retryable errors: exponential backoff with jitter, Retry-After honoured, up
    to a maximum of attempts). A row is marked ``sending`` and committed before its HTTP call; one left
    ``sending`` by a worker that died is never resent blindly: it becomes ``unknown`` (outcome unknown),
    visible, with a retry button. Every state change goes through ``_set_state``.

    Received messages are read receipts' source: an agent reading one queues a receipt for Meta, sent by a
    cron (opening a chat never waits on Meta).
    """

    _name = "strato.whatsapp.message"
    _description = "WhatsApp Message"
    _order = "message_at desc, id desc"
    _rec_name = "body"

    conversation_id = fields.Many2one(
        "strato.whatsapp.conversation", required=True, ondelete="cascade", index=True)
    lead_id = fields.Many2one(
        "crm.lead", ondelete="set null", index="btree_not_null",
        help="The lead the conversation belonged to when the message was exchanged.")
    account_id = fields.Many2one(related="conversation_id.account_id", store=True, index=True)
    company_id = fields.Many2one(related="conversation_id.company_id", store=True, index=True)
    author_id = fields.Many2one(
        "res.users", "Sent By", ondelete="set null", help="The user who wrote an outbound message.")
    direction = fields.Selection(
        [("inbound", "Received"), ("outbound", "Sent")], required=True, index=True)
    message_type = fields.Selection(MESSAGE_TYPES, "Type", required=True, default="text")
    body = fields.Text()
    message_at = fields.Datetime(
        "Date", required=True, default=fields.Datetime.now, index=True,
        help="When the contact sent it (inbound) or when it was written (outbound).")
    media_id = fields.Char("Meta Media ID", copy=False)
    media_mime_type = fields.Char("Media Type")
    media_filename = fields.Char("File Name")
    attachment_ids = fields.Many2many(
        "ir.attachment", "strato_whatsapp_message_attachment_rel", "message_id", "attachment_id",
        string="Attachments")
    template_id = fields.Many2one("strato.whatsapp.template", ondelete="restrict", index="btree_not_null")
    wamid = fields.Char("WhatsApp Message ID", copy=False, readonly=True, index="btree_not_null")
    reply_to_wamid = fields.Char("Replies To", copy=False, help="The WhatsApp message this one quotes.")
    state = fields.Selection(MESSAGE_STATES, required=True, default=const.STATE_QUEUED, index=True, copy=False)
    is_read = fields.Boolean(
        "Read by Agent", default=False, help="For received messages: an agent has seen it.")
    sent_at = fields.Datetime(readonly=True, copy=False)
    delivered_at = fields.Datetime(readonly=True, copy=False)
    read_at = fields.Datetime(readonly=True, copy=False)
    failed_at = fields.Datetime(readonly=True, copy=False)
    error_code = fields.Integer("Error Code", readonly=True, copy=False, help="Meta's error code.")
    error_message = fields.Text(
        readonly=True, copy=False,
        help="What went wrong and what to do, in the lead's language (Meta's own words are in the details).")
    error_details = fields.Text(
        "Meta's Explanation", readonly=True, copy=False, groups="strato_whatsapp.group_whatsapp_admin",
        help="Meta's error code, title and details as Meta sent them, for administrators.")
    attempt_count = fields.Integer("Attempts", readonly=True, copy=False, default=0)
    next_attempt_at = fields.Datetime("Next Attempt", readonly=True, copy=False)
    media_state = fields.Selection(MEDIA_STATES, default="none", required=True, copy=False, index=True)
    media_sha256 = fields.Char(copy=False)
    is_voice = fields.Boolean("Voice Note")
    media_attempt_count = fields.Integer(copy=False, default=0)
    media_retry_at = fields.Datetime(copy=False)
    latitude = fields.Float(digits=(10, 7))
    longitude = fields.Float(digits=(10, 7))
    reaction_emoji = fields.Char("Reaction", help="The contact's reaction to this message.")
    mail_message_id = fields.Many2one("mail.message", "Chatter Message", ondelete="set null", copy=False)
    created_lead = fields.Boolean(
        "Created Its Lead", readonly=True, copy=False,
        help="No open lead had this number: the lead was created for this message.")
    chatter_pending = fields.Boolean(
        copy=False, index="btree_not_null", help="Technical: received, not posted in the lead's chatter yet.")
    # What Meta's statuses tell about the conversation and its price.
    meta_conversation_id = fields.Char("Meta Conversation", readonly=True, copy=False)
    conversation_origin = fields.Char(readonly=True, copy=False, help="Meta's conversation origin type.")
    conversation_expires_at = fields.Datetime(readonly=True, copy=False)
    pricing_category = fields.Char(readonly=True, copy=False, help="marketing, utility, authentication, service...")
    pricing_model = fields.Char(readonly=True, copy=False)
    pricing_type = fields.Char(readonly=True, copy=False)
    pricing_billable = fields.Boolean("Billable", readonly=True, copy=False)

    # The send queue
    payload = fields.Json(
        "Frozen Template Parameters", copy=False,
        help="For a template message: its parameters (header, body and buttons) as rendered for the lead when "
             "the message was queued, so what the agent previewed is what goes out. Everything else (the "
             "recipient, the text, the file, the message it replies to) is read from the message when it is "
             "sent. Empty for other messages; a template message without it is rendered at send time.")
    failure_type = fields.Selection(FAILURE_TYPES, readonly=True, copy=False)
    sending_started_at = fields.Datetime(readonly=True, copy=False)

    # Read receipts (received messages)
    read_receipt_state = fields.Selection(
        READ_RECEIPT_STATES, "Read Receipt", readonly=True, copy=False, index="btree_not_null",
        help="For received messages: whether Meta was told (blue ticks on the contact's phone) that an "
             "agent read it.")
    read_receipt_attempts = fields.Integer(readonly=True, copy=False)

    _sql_constraints = [
        ("account_wamid_uniq", "unique(account_id, wamid)", "This WhatsApp message is already stored."),
    ]

    def init(self):
        super().init()
        # The claim query's own index: the queue is a sliver of a table that keeps every message ever
        # exchanged, and this keeps claiming a batch at a fraction of a millisecond however large it grows.
        create_index(self.env.cr, "strato_whatsapp_message_send_queue_index", self._table,
                     ["account_id", "next_attempt_at", "id"], where="state = 'queued' AND direction = 'outbound'")

    @api.model_create_multi
    def create(self, vals_list):
        """Whoever creates an outbound message in state ``queued`` (the composer, the chat, a server
        action, another module, an import, an integration over RPC), the send cron picks it up: without a
        due time it is due now, and the cron is woken. Its note and delivery status appear on its lead."""
        now = fields.Datetime.now()
        for vals in vals_list:
            if vals.get("direction") == "outbound" and vals.get("state", const.STATE_QUEUED) == const.STATE_QUEUED \
                    and not vals.get("next_attempt_at"):
                vals["next_attempt_at"] = now
        messages = self._create_with_leads(vals_list)
        outbound = messages.filtered(lambda message: message.direction == "outbound")
        if outbound:
            outbound._post_outbound_to_chatter()
            outbound._touch_conversations_outbound()
            if any(message.state == const.STATE_QUEUED for message in outbound):
                # sudo: the addon's own cron; waking it sends nothing the queue would not send anyway.
                self.env.ref("strato_whatsapp.ir_cron_whatsapp_send").sudo()._trigger()
        if any(vals.get("wamid") and vals.get("direction") == "outbound" for vals in vals_list):
            self.env["strato.whatsapp.early.status"]._apply_for(outbound)
        messages._notify_chat()  # other agents with the lead open see it too
        return messages

    def _touch_conversations_outbound(self):
        """The inbox sorts by the last message either way: an agent's message moves its conversation too."""
        latest = {}
        for message in self:
            conversation = message.conversation_id
            latest[conversation] = max(latest.get(conversation, message.message_at), message.message_at)
        for conversation, when in latest.items():
            if not conversation.last_message_at or conversation.last_message_at < when:
                # sudo: the message was created by someone allowed to; the conversation's time follows it.
                conversation.sudo().last_message_at = when

    def write(self, vals):
        result = super().write(vals)
        if vals.get("wamid"):
            self.env["strato.whatsapp.early.status"]._apply_for(self.filtered(lambda m: m.direction == "outbound"))
        if CHAT_VISIBLE_FIELDS.intersection(vals):
            self._notify_chat()
        return result

    @api.model
    def _create_with_leads(self, vals_list):
        conversation_ids = {vals["conversation_id"] for vals in vals_list if not vals.get("lead_id")}
        lead_by_conversation = {
            conversation.id: conversation.lead_id.id
            for conversation in self.env["strato.whatsapp.conversation"].browse(conversation_ids)}
        for vals in vals_list:
            if not vals.get("lead_id"):
                vals["lead_id"] = lead_by_conversation.get(vals["conversation_id"], False)
        return super().create(vals_list)

    # ------------------------------------------------------------------
    # Inbound messages
    # ------------------------------------------------------------------
    @api.model
    def _receive(self, account, events):
        """Store inbound messages (``webhook.InboundMessage``) of ``account``; redeliveries are skipped."""
        events = self._new_events_only(account, events)
        if not events:
            return self.browse()
        senders = {event.wamid: (event.wa_id, event.bsuid, event.profile_name or event.username) for event in events}
        conversations = self.env["strato.whatsapp.conversation"]._for_senders(account, senders)
        unique_conversations = self.env["strato.whatsapp.conversation"].union(*conversations.values())
        created_leads = self.env["crm.lead"]._whatsapp_assign_leads(account, unique_conversations)
        # Texts the values may carry (an order, an unsupported type) are in the lead's language; one
        # environment per language, not per message.
        lang_of = {conversation.id: conversation.lead_id._whatsapp_lang() for conversation in unique_conversations}
        in_lang = {lang: self.with_context(lang=lang) if lang else self for lang in set(lang_of.values())}
        values_list = []
        for event in events:
            conversation = conversations[event.wamid]
            values_list.append(in_lang[lang_of[conversation.id]]._inbound_values(event, conversation))
        awaiting_notice = set(created_leads.ids)
        for values in values_list:
            if values["chatter_pending"] and values["lead_id"] in awaiting_notice:
                values["created_lead"] = True
                awaiting_notice.discard(values["lead_id"])
        for lead in created_leads.browse(awaiting_notice):  # only a reaction came: none of it goes to the chatter
            lead._whatsapp_log_creation()
        messages = self._insert_received(values_list)
        messages._touch_conversations()
        messages._apply_reactions()
        messages._apply_opt_keywords()
        messages._notify_chat()
        if any(message.media_state == "pending" for message in messages):
            self.env.ref("strato_whatsapp.ir_cron_whatsapp_media")._trigger()
        return messages

    @api.model
    def _insert_received(self, values_list):
        """Create received messages (complete values with a wamid, as ``_inbound_values`` makes them) as
        ``create`` would, without its per-record work: a burst from Meta is thousands of messages, and
        ``create`` asks for defaults, fills the cache field by field and recomputes the related account
        and company once per message. Here defaults are asked once, the related columns come from the
        conversations, and the ORM is then told what was created, so what depends on messages (the
        conversations' unread and failed counts, the one2many caches) follows as after ``create``.

        Automation rules triggered by the creation of messages hook ``create``: when there are any, the
        messages go through ``create`` so that the rules run."""
        if not values_list:
            return self.browse()
        if self.env["base.automation"]._get_actions(self, CREATE_TRIGGERS):
            return self.create(values_list)
        unknown = {name for vals in values_list for name in vals
                   if not (name in self._fields and self._fields[name].store and self._fields[name].column_type)}
        if unknown:
            raise ValueError(f"Not columns of received messages: {sorted(unknown)}")
        conversations = self.env["strato.whatsapp.conversation"].browse({vals["conversation_id"] for vals in values_list})
        related = {conversation.id: {"account_id": conversation.account_id.id, "company_id": conversation.company_id.id}
                   for conversation in conversations}
        now, uid = self.env.cr.now(), self.env.uid
        rows = [{**vals, **related[vals["conversation_id"]],
                 "create_uid": uid, "create_date": now, "write_uid": uid, "write_date": now} for vals in values_list]
        columns = [name for name, field in self._fields.items() if field.store and field.column_type and name != "id"]
        missing = {name for name in columns if any(name not in row for row in rows)}
        unexpected = [name for name in missing if self._fields[name].compute]
        if unexpected:
            raise ValueError(f"Received messages need values for the computed fields {unexpected}")
        defaults = self.default_get(list(missing))
        rows = [{**{name: defaults[name] for name in missing if name not in row and name in defaults}, **row}
                for row in rows]
        fields_ = [self._fields[name] for name in columns]
        # One array per column. A field a row has no value for is NULL, as with create; a column that is
        # NULL on every row is left out.
        inserted = {}
        for field in fields_:
            converted = [field.convert_to_column_insert(row[field.name], self, row) if field.name in row else None
                         for row in rows]
            if any(value is not None for value in converted):
                inserted[field] = converted
        self.env.cr.execute(SQL(
            "INSERT INTO %s (%s) SELECT * FROM unnest(%s) RETURNING account_id, wamid, id",
            SQL.identifier(self._table), SQL(", ").join(SQL.identifier(field.name) for field in inserted),
            SQL(", ").join(SQL(f"%s::{field.column_type[1]}[]", values) for field, values in inserted.items())))
        id_by_wamid = {(account_id, wamid): message_id for account_id, wamid, message_id in self.env.cr.fetchall()}
        messages = self.browse([id_by_wamid[row["account_id"], row["wamid"]] for row in rows])
        cache = self.env.cache
        for field in fields_:
            cache.update(messages, field, [field.convert_to_cache(row.get(field.name), self, validate=False)
                                           for row in rows])
        for field in self._fields.values():
            if field.type in ("one2many", "many2many"):
                cache.update(messages, field, [()] * len(messages))
        for field in fields_:
            if field.type == "many2one" and self.pool.field_inverses[field]:
                by_value = {}
                for message, row in zip(messages, rows):
                    by_value.setdefault(row.get(field.name), []).append(message.id)
                for value, message_ids in by_value.items():
                    field._update_inverses(self.browse(message_ids), value or None)
        with self.env.protecting(fields_, messages):
            messages.modified(self._fields, create=True)
        messages._validate_fields({name for row in rows for name in row})
        messages.check_access("create")
        return messages

    @api.model
    def _new_events_only(self, account, events):
        unique = {}
        for event in events:
            unique.setdefault(event.wamid, event)
        known = set(self.with_context(active_test=False).search([
            ("account_id", "=", account.id), ("wamid", "in", list(unique))]).mapped("wamid"))
        return [event for wamid, event in unique.items() if wamid not in known]

    @api.model
    def _inbound_values(self, event, conversation):
        message_type = event.message_type if event.message_type in dict(MESSAGE_TYPES) else "unsupported"
        values = {
            "conversation_id": conversation.id,
            "lead_id": conversation.lead_id.id,
            "direction": "inbound",
            "message_type": message_type,
            "state": const.STATE_RECEIVED,
            "wamid": event.wamid,
            "message_at": event.timestamp,
            "body": self._inbound_body(event),
            "reply_to_wamid": event.context_wamid or (event.reaction and event.reaction.message_id) or False,
            "chatter_pending": message_type != "reaction",
        }
        if event.media:
            values.update({
                "media_id": event.media.media_id, "media_mime_type": event.media.mime_type,
                "media_filename": event.media.filename, "media_sha256": event.media.sha256,
                "media_state": "pending", "is_voice": event.media.is_voice})
        if event.location:
            values.update({"latitude": event.location.latitude, "longitude": event.location.longitude})
        return values

    @api.model
    def _inbound_body(self, event):
        """The message as text an agent reads in lists, search and the chatter."""
        if event.location:
            place = ", ".join(filter(None, [event.location.name, event.location.address]))
            return "\n".join(filter(None, [place, webhook.map_link(event.location.latitude, event.location.longitude)]))
        if event.contacts:
            return "\n".join(
                " ".join(filter(None, [card.get("formatted_name"), ", ".join(card.get("phones") or [])]))
                for card in event.contacts)
        if event.order:
            items = len(event.order.product_items)
            return "\n".join(filter(None, [_("Order of %s item(s)", items), event.order.text]))
        if event.message_type == "unsupported" or (event.errors and not event.text):
            reasons = "; ".join(filter(None, (error.title or error.message for error in event.errors)))
            return _("Message type not supported by WhatsApp Cloud API%s", (": " + reasons) if reasons else "")
        return event.text or ""

    def _touch_conversations(self):
        """Move the conversations' last message and last inbound times forward to these messages', in one
        statement: a burst touches hundreds of conversations, and nothing derives from these columns but
        the (non-stored) reply window."""
        latest = {}
        for message in self:
            conversation_id = message.conversation_id.id
            latest[conversation_id] = max(latest.get(conversation_id) or message.message_at, message.message_at)
        if not latest:
            return
        conversations = self.env["strato.whatsapp.conversation"].browse(latest)
        touched_fields = ["last_message_at", "last_inbound_at", "state", "write_date", "write_uid"]
        conversations.flush_recordset(touched_fields)
        self.env.cr.execute("""
            UPDATE strato_whatsapp_conversation AS conversation
               SET last_message_at = GREATEST(conversation.last_message_at, touched.at),
                   last_inbound_at = GREATEST(conversation.last_inbound_at, touched.at),
                   state = 'open', write_date = %s, write_uid = %s
              FROM unnest(%s::int[], %s::timestamp[]) AS touched(id, at)
             WHERE conversation.id = touched.id
        """, [fields.Datetime.now(), self.env.uid, list(latest), list(latest.values())])
        conversations.invalidate_recordset(touched_fields)

    def _apply_reactions(self):
        reactions = self.filtered(lambda message: message.message_type == "reaction" and message.reply_to_wamid)
        if not reactions:
            return
        # Within the reaction's conversation: a contact reacts to messages of their own chat only.
        targets = self.search([("conversation_id", "in", reactions.conversation_id.ids),
                               ("wamid", "in", reactions.mapped("reply_to_wamid"))])
        by_wamid = {(target.conversation_id.id, target.wamid): target for target in targets}
        for reaction in reactions:
            target = by_wamid.get((reaction.conversation_id.id, reaction.reply_to_wamid))
            if target:
                target.reaction_emoji = reaction.body or False

    def _chatter_text(self):
        """One line or more of plain text describing the message, for the chatter."""
        self.ensure_one()
        labels = {
            "image": _("Image"), "video": _("Video"), "audio": _("Audio"), "document": _("Document"),
            "sticker": _("Sticker"), "location": _("Location"), "contacts": _("Contact card"),
            "order": _("Order"),
        }
        label = labels.get(self.message_type)
        if self.message_type == "audio" and self.is_voice:
            label = _("Voice message")
        if self.message_type == "document" and self.media_filename:
            label = _("Document: %s", self.media_filename)
        return "\n".join(filter(None, [label and f"[{label}]", self.body]))

    @api.model
    def _post_pending_chatter(self, commit=None, batch_size=100, max_seconds=None):
        """Post received messages in their leads' chatter, oldest first, committing after each batch.
        With ``max_seconds``, stop after about that long; return whether some are still to post.

        Followers are notified as for any chatter message, but their e-mails go through the mail queue
        instead of being sent from this loop."""
        deadline = max_seconds is not None and time.monotonic() + max_seconds
        while True:
            pending = self.search([("chatter_pending", "=", True)], order="id", limit=batch_size)
            if not pending:
                return False
            posted = self.browse()
            for message in pending.with_context(mail_notify_force_send=False):
                try:
                    with self.env.cr.savepoint():
                        message._in_lead_lang()._post_inbound_to_chatter()
                except Exception:  # noqa: BLE001 - the message row is safe; only its chatter copy is skipped
                    _logger.exception("WhatsApp message %s could not be posted in the chatter", message.id)
                posted |= message
                if deadline and time.monotonic() >= deadline:
                    break
            posted.chatter_pending = False
            if commit:
                commit()
            if deadline and time.monotonic() >= deadline:
                return bool(pending - posted) or bool(self.search_count([("chatter_pending", "=", True)], limit=1))

    def _post_inbound_to_chatter(self):
        for message in self:
            lead = message.lead_id
            if not lead or message.message_type == "reaction":
                continue
            conversation = message.conversation_id
            author = conversation.partner_id or lead.partner_id
            sender = conversation.profile_name or lead.contact_name or _("WhatsApp contact")
            number = conversation.wa_id and phone.format_international("+" + conversation.wa_id)
            if message.created_lead:
                lead._whatsapp_log_creation()
            body = Markup('<p class="o_strato_whatsapp"><i class="fa fa-whatsapp" title="WhatsApp"/> %s</p>') % \
                plaintext2html(message._chatter_text() or _("(empty message)"))
            mail_message = lead.with_context(mail_create_nosubscribe=True).message_post(
                body=body, message_type="comment", subtype_xmlid="mail.mt_comment",
                author_id=author.id or None,
                email_from=False if author else f"{sender} (WhatsApp {number or conversation.bsuid})",
                attachment_ids=message.attachment_ids.ids)
            message.mail_message_id = mail_message

    def _apply_opt_keywords(self):
        params = self.env["ir.config_parameter"].sudo()  # sudo: reads the addon's own settings
        opt_out = self._keywords(params.get_param("strato_whatsapp.opt_out_keywords", DEFAULT_OPT_OUT_KEYWORDS))
        opt_in = self._keywords(params.get_param("strato_whatsapp.opt_in_keywords", DEFAULT_OPT_IN_KEYWORDS))
        opt_out = opt_out | MARKETING_STOP_BUTTONS
        for message in self.filtered(lambda message: message.message_type in ("text", "button") and message.body):
            word = message.body.strip().upper()
            if message.message_type == "button" and word not in MARKETING_STOP_BUTTONS:
                continue  # a button only counts when it is the marketing opt-out one
            if word not in opt_out and word not in opt_in:
                continue
            wa_id = message.conversation_id.wa_id
            number = wa_id and (phone.e164_from_wa_id(wa_id) or "+" + wa_id)
            env = message._in_lead_lang().env
            if word in opt_out:
                reason = env._("Asked to stop WhatsApp messages by replying “%s”.", message.body.strip())
            else:
                reason = env._("Asked to receive WhatsApp messages again by replying “%s”.", message.body.strip())
            message.lead_id._whatsapp_set_opt_out(word in opt_out, number, reason)

    @api.model
    def _apply_marketing_preferences(self, account, preferences):
        """Meta's ``user_preferences`` webhook: the contact stopped (or resumed) marketing messages in
        WhatsApp's own settings. Treated as their STOP (START): the number goes on (off) the blacklist."""
        conversations = self.env["strato.whatsapp.conversation"].search([
            ("account_id", "=", account.id), ("wa_id", "in", [preference.wa_id for preference in preferences])])
        by_wa_id = {conversation.wa_id: conversation for conversation in conversations}
        for preference in sorted(preferences, key=lambda preference: preference.timestamp):
            lead = by_wa_id[preference.wa_id].lead_id if preference.wa_id in by_wa_id else self.env["crm.lead"]
            lang = lead._whatsapp_lang()
            env = self.with_context(lang=lang).env if lang else self.env
            reason = (env._("Stopped marketing messages in WhatsApp's own settings.") if preference.stopped
                      else env._("Asked for marketing messages again in WhatsApp's own settings."))
            number = phone.e164_from_wa_id(preference.wa_id) or "+" + preference.wa_id
            lead._whatsapp_set_opt_out(preference.stopped, number, reason)

    def _in_lead_lang(self):
        """This message in the context language of its lead (see ``crm.lead._whatsapp_lang``), for what a
        cron writes about it."""
        self.ensure_one()
        lang = self.lead_id._whatsapp_lang()
        return self.with_context(lang=lang) if lang and lang != self.env.lang else self

    @api.model
    def _keywords(self, text):
        return {word.strip().upper() for word in (text or "").split(",") if word.strip()}

    def _notify_chat(self):
        """Tell the chat panels open on these messages' leads that messages arrived or changed.

        Collected during the transaction and sent once per lead before it commits: a webhook batch
        of statuses makes one notification per lead, not one per status.
        """
        pending = self._chat_notifications_pending()
        for message in self.filtered("lead_id"):
            pending.setdefault(message.lead_id.id, set()).add(message.id)

    @api.model
    def _notify_chat_leads(self, leads):
        """Tell the chat panels open on ``leads`` to redraw their reply box (an opt-out changed)."""
        pending = self._chat_notifications_pending()
        for lead in leads:
            pending.setdefault(lead.id, set())

    @api.model
    def _chat_notifications_pending(self):
        data = self.env.cr.precommit.data
        if "strato_whatsapp.chat" not in data:
            data["strato_whatsapp.chat"] = {}
            self.env.cr.precommit.add(self._send_chat_notifications)
        return data["strato_whatsapp.chat"]

    def _send_chat_notifications(self):
        pending = self.env.cr.precommit.data.pop("strato_whatsapp.chat", {})
        for lead in self.env["crm.lead"].browse(pending).exists():
            self.env["bus.bus"]._sendone((lead, "strato_whatsapp"), "strato_whatsapp/messages", {
                "lead_id": lead.id,
                "message_ids": sorted(pending[lead.id]),
            })

    # ------------------------------------------------------------------
    # Statuses: the state machine of outbound messages, driven by Meta
    # ------------------------------------------------------------------
    @api.model
    def _apply_statuses(self, account, events):
        """Apply status webhooks (``webhook.StatusUpdate``) of ``account``, oldest first.

        States only move forward (a late "delivered" never undoes "read"); the same status twice
        changes nothing; a status whose message we do not know yet is kept until the message appears.
        """
        by_wamid, by_id = self._status_targets(account, events)
        early = []
        for event in sorted(events, key=lambda event: event.timestamp):
            message = by_wamid.get(event.wamid) or by_id.get(self._callback_message_id(event))
            if message:
                message._apply_status(event)
            else:
                early.append(event)
        if early:
            self.env["strato.whatsapp.early.status"]._keep(account, early)

    @api.model
    def _status_targets(self, account, events):
        wamids = list({event.wamid for event in events})
        ids = [message_id for message_id in map(self._callback_message_id, events) if message_id]
        messages = self.search([("account_id", "=", account.id), "|",
                                ("wamid", "in", wamids), ("id", "in", ids)])
        by_wamid = {message.wamid: message for message in messages if message.wamid}
        by_id = {message.id: message for message in messages if message.direction == "outbound"}
        return by_wamid, by_id

    @api.model
    def _callback_message_id(self, event):
        data = event.biz_opaque_callback_data or ""
        if data.startswith(CALLBACK_PREFIX) and data[len(CALLBACK_PREFIX):].isdigit():
            return int(data[len(CALLBACK_PREFIX):])
        return None

    def _apply_status(self, event):
        self.ensure_one()
        state = const.META_STATUS_TO_STATE.get(event.status)
        values = self._status_pricing_values(event)
        if not self.wamid:
            values["wamid"] = event.wamid
        if state == const.STATE_FAILED:
            if self.state in const.FAILED_ALLOWED_FROM:
                values.update(self._in_lead_lang()._failure_values(event))
        elif state and const.STATE_RANK.get(state, -1) > const.STATE_RANK.get(self.state, 99):
            values["state"] = state
        if state and state != const.STATE_FAILED:
            timestamp_field = f"{state}_at"
            if not self[timestamp_field]:
                values[timestamp_field] = event.timestamp
        values = {key: value for key, value in values.items() if self[key] != value}
        new_state = values.pop("state", None)
        if new_state:
            self._set_state(new_state, **values)
            if new_state == const.STATE_FAILED:
                self._log_failure_on_lead()
        elif values:
            self.write(values)

    @api.model
    def _status_pricing_values(self, event):
        values = {}
        if event.conversation_id:
            values.update({"meta_conversation_id": event.conversation_id,
                           "conversation_origin": event.conversation_origin or False,
                           "conversation_expires_at": event.conversation_expiration or False})
        if event.pricing_category or event.pricing_model:
            values.update({"pricing_category": event.pricing_category or False,
                           "pricing_model": event.pricing_model or False,
                           "pricing_type": event.pricing_type or False,
                           "pricing_billable": bool(event.pricing_billable)})
        return values

    @api.model
    def _failure_values(self, event):
        meta = event.errors[0] if event.errors else None
        if not meta:
            return {"state": const.STATE_FAILED, "failed_at": event.timestamp, "error_code": 0,
                    "failure_type": "unknown", "error_details": False,
                    "error_message": _("Meta reported the message as not delivered, without saying why.")}
        error = graph_errors.error_from_payload({
            "code": meta.code, "title": meta.title, "message": meta.message,
            "error_data": {"details": meta.details} if meta.details else {}})
        return {
            "state": const.STATE_FAILED,
            "failed_at": event.timestamp,
            "error_code": error.code or 0,
            "failure_type": self._failure_type_for(error),
            "error_message": self._error_sentence(error),
            "error_details": self._error_details(error),
        }

    @api.model
    def _error_sentence(self, error):
        """What an agent reads about a Meta error: what happened and what to do, translated; Meta's own
        words go to ``error_details``."""
        if error.category in const.ACCOUNT_BLOCKING_CATEGORIES:
            return _("This WhatsApp number cannot send at the moment: Meta refused its access. An administrator "
                     "has been told; the message waits and goes out once it is fixed.")
        return {
            const.ERROR_WINDOW_CLOSED: _(
                "More than 24 hours have passed since the contact last wrote: only an approved template can "
                "be sent until they write again."),
            const.ERROR_RECIPIENT: _(
                "WhatsApp could not deliver to this number: it may not use WhatsApp, or the contact's app is "
                "out of date. Check the number, or call the contact."),
            const.ERROR_MARKETING_OPT_OUT: _(
                "The contact has stopped marketing messages from this business: send them service "
                "messages only."),
            const.ERROR_WITHHELD: _(
                "Meta held this marketing message back: the contact has received many marketing messages "
                "lately. Try again in a few days, or answer when they write."),
            const.ERROR_TEMPLATE: _(
                "Meta refused the template: it is not approved, is paused, or its variables do not match. "
                "Check it under WhatsApp > Templates."),
            const.ERROR_INVALID_PARAMETER: _(
                "Meta refused the content of the message (text, file or link). Correct it and send it again."),
            const.ERROR_MEDIA: _(
                "WhatsApp did not accept the file (its type or size). Send it in another format, or as a "
                "document."),
            const.ERROR_RETRYABLE: _(
                "Meta could not deliver the message because of a temporary problem on its side. Try again in "
                "a few minutes."),
        }.get(error.category, _(
            "Meta refused the message. An administrator can read Meta's explanation in the message's "
            "details."))

    @api.model
    def _error_details(self, error):
        """Meta's code and words, as Meta sent them (for administrators)."""
        text = " ".join(dict.fromkeys(filter(None, [error.title, error.message, error.details])))
        return f"{error.code}: {text}" if error.code else text or False

    def _log_failure_on_lead(self):
        for message in self.filtered("lead_id"):
            body = Markup("<p>%s</p><p>%s</p>") % (
                message._in_lead_lang().env._("A WhatsApp message could not be delivered:"),
                message.error_message or "")
            message.lead_id._message_log(body=body)

    # ------------------------------------------------------------------
    # Inbound media: fetched by a cron, never inside the webhook request
    # ------------------------------------------------------------------
    @api.model
    def _cron_fetch_media(self):
        """Download pending inbound media into attachments, retrying failed downloads with backoff."""
        while True:
            self.flush_model()
            self.env.cr.execute("""
                SELECT id FROM strato_whatsapp_message
                 WHERE media_state = 'pending'
                   AND (media_retry_at IS NULL OR media_retry_at <= %s)
                 ORDER BY id LIMIT %s FOR NO KEY UPDATE SKIP LOCKED
            """, [fields.Datetime.now(), MEDIA_BATCH_SIZE])
            messages = self.browse(row[0] for row in self.env.cr.fetchall())
            if not messages:
                return
            for message in messages:
                message._fetch_media()
            if not getattr(threading.current_thread(), "testing", False):
                self.env.cr.commit()

    def _fetch_media(self):
        self.ensure_one()
        # sudo: reads the addon's own size limit, a system parameter.
        max_bytes = int(self.env["ir.config_parameter"].sudo().get_param(
            "strato_whatsapp.media_max_bytes", DEFAULT_MEDIA_MAX_BYTES))
        try:
            client = self.account_id._graph_client()
            info = client.get_media_url(self.media_id)
            if (info.get("file_size") or 0) > max_bytes:
                raise graph_errors.MediaError("The media file is larger than allowed", retryable=False,
                                           details=f"limit {max_bytes} bytes")
            content = client.download_media(info["url"], max_bytes=max_bytes, sha256=info.get("sha256"))
        except graph_errors.GraphApiError as error:
            self._media_failed(error, max_bytes)
            return
        except Exception as error:  # noqa: BLE001 - e.g. no token: retried like a network error
            self._media_failed(graph_errors.GraphApiError(str(error), retryable=True), max_bytes)
            return
        self._attach_media(content, info.get("mime_type") or self.media_mime_type)

    def _attach_media(self, content, mime_type):
        self.ensure_one()
        # The file and its type are the contact's choice. Core stores HTML, SVG and XML uploads as
        # text/plain unless the uploader may edit views, so that the chatter's viewer never opens them
        # as a page of our origin; stored as superuser the file would pass that check, so the context
        # asks core to apply the rule whoever stores it.
        attachments = self.env["ir.attachment"].with_context(attachments_mime_plainxml=True)
        # Only the media cron gets here, with bytes Meta served for this inbound message's own media id;
        # the file is bound to this message's lead (or the message), so agents reach it through their
        # rights on those, and the context above keeps active content inert.
        # sudo: the media cron stores the file Meta served for this message's own media id.
        attachment = attachments.sudo().create({
            "name": self.media_filename or self._media_default_filename(mime_type),
            "raw": content,
            "mimetype": mime_type or "application/octet-stream",
            "res_model": "crm.lead" if self.lead_id else self._name,
            "res_id": self.lead_id.id or self.id,
        })
        self.write({"attachment_ids": [(4, attachment.id)], "media_state": "done", "media_retry_at": False,
                    "media_mime_type": mime_type or self.media_mime_type})
        if self.mail_message_id:
            # sudo: the chatter copy of this same message gets the file just stored for it (above).
            self.mail_message_id.sudo().attachment_ids = [(4, attachment.id)]
        self._notify_chat()

    def _media_default_filename(self, mime_type):
        extension = mimetypes.guess_extension((mime_type or "").split(";")[0].strip()) or ""
        return f"whatsapp-{self.message_type}-{self.id}{extension}"

    def _media_failed(self, error, max_bytes):
        attempts = self.media_attempt_count + 1
        too_large = "larger than allowed" in (error.message or "")
        if error.retryable and attempts < const.MEDIA_RETRY_MAX_ATTEMPTS and not too_large:
            self.write({"media_attempt_count": attempts, "media_retry_at": fields.Datetime.now() +
                        timedelta(seconds=graph_errors.retry_delay(attempts, error.retry_after))})
            return
        _logger.warning("WhatsApp media %s of message %s not downloaded: %s", self.media_id, self.id, error)
        self.write({"media_attempt_count": attempts, "media_state": "too_large" if too_large else "failed",
                    "media_retry_at": False})
        if self.lead_id:
            self._in_lead_lang()._log_media_failure(too_large, max_bytes, error)

    def _log_media_failure(self, too_large, max_bytes, error):
        reason = (_("The file is larger than %s MB.", max_bytes // (1024 * 1024)) if too_large
                  else _("WhatsApp did not deliver the file (%s).", error.message))
        kind = dict(self._fields["message_type"]._description_selection(self.env)).get(self.message_type)
        self.lead_id._message_log(body=_("A WhatsApp %(kind)s from the contact could not be downloaded. %(reason)s",
                                         kind=kind, reason=reason))

    def action_retry_media(self):
        self.check_access("read")
        # sudo: the caller can read these messages (checked above); the download state is the queue's own.
        self.filtered(lambda message: message.media_id and message.media_state in ("failed", "pending")).sudo().write(
            {"media_state": "pending", "media_retry_at": False, "media_attempt_count": 0})
        self.env.ref("strato_whatsapp.ir_cron_whatsapp_media")._trigger()

    # ------------------------------------------------------------------
    # Enqueueing
    # ------------------------------------------------------------------
    @api.model
    def _enqueue_for_leads(self, leads, body=None, template=None, attachment=None, account=None,
                           reply_to_wamid=None, raise_on_skip=False):
        """Queue one message per lead and wake the send cron; returns (messages, {lead: reason skipped}).

        Leads that cannot receive it (no number, window closed for free text, opted out of marketing, a
        conversation owned by a colleague's open lead, another company) are skipped with a note on their
        chatter, or a ``UserError`` when ``raise_on_skip``. A skipped lead is left as it was: no
        conversation is created or moved for it.
        """
        if not (body or template or attachment):
            raise UserError(_("Write a message, choose a template or attach a file."))
        if template:
            template.check_access("read")
            if template.status != "approved":
                raise UserError(_("Template %s is not approved by Meta yet; only approved templates can be sent.",
                                  template.display_name))
            if account and template.account_id != account:
                raise UserError(_("Template %(template)s belongs to another WhatsApp number than %(account)s.",
                                  template=template.display_name, account=account.display_name))
        account = account or (template.account_id if template else None)
        Conversation = self.env["strato.whatsapp.conversation"]
        links = Conversation._plan_for_leads(leads, account)
        ready, skipped = {}, {}
        for lead in leads:
            link = links.get(lead)
            reason = self._enqueue_refusal(lead, link, template)
            if not reason:
                try:
                    ready[lead] = (link, self._outbound_values(lead, body, template, attachment, reply_to_wamid))
                except UserError as error:  # e.g. a template variable with no value and no fallback
                    reason = str(error)
            if reason:
                skipped[lead] = reason
        if skipped and raise_on_skip:
            raise UserError("\n".join(skipped.values()))
        for lead, reason in skipped.items():
            lead._message_log(body=_("WhatsApp message not sent: %s", reason))
        conversations = Conversation._link_planned({lead: link for lead, (link, _values) in ready.items()})
        values = [dict(lead_values, conversation_id=conversations[lead].id) for lead, (_link, lead_values) in ready.items()]
        # Users read messages but never write them directly: what a message says, and where it stands,
        # is the queue's record. create posts the notes and wakes the send cron, whoever creates them.
        # sudo: the plan checked the caller's right to write to these leads.
        return self.sudo().create(values).with_env(self.env), skipped

    @api.model
    def _recently_sent_to(self, leads, template=None, body=None):
        """The leads whose number got this template (or this text) within the repeat window, in any state
        but failed: what an automation must not send again, and what the composer asks about."""
        hours = int(self.env["ir.config_parameter"].sudo().get_param(  # sudo: reads the addon's own setting
            "strato_whatsapp.automation_repeat_hours", DEFAULT_REPEAT_HOURS) or 0)
        if not leads or hours <= 0 or not (template or body):
            return leads.browse()
        wa_ids = {lead: phone.wa_id_from_e164(lead.whatsapp_number) for lead in leads if lead.whatsapp_number}
        domain = [("direction", "=", "outbound"), ("state", "!=", const.STATE_FAILED),
                  ("create_date", ">=", fields.Datetime.now() - timedelta(hours=hours)),
                  "|", ("lead_id", "in", leads.ids), ("conversation_id.wa_id", "in", list(set(wa_ids.values())))]
        domain += [("template_id", "=", template.id)] if template else [("body", "=", body)]
        # sudo: only which of the caller's leads were written to comes out, to avoid sending twice.
        sent = self.sudo().search(domain)
        sent_leads, sent_wa_ids = set(sent.lead_id.ids), set(sent.conversation_id.mapped("wa_id"))
        return leads.filtered(lambda lead: lead.id in sent_leads or wa_ids.get(lead) in sent_wa_ids)

    @api.model
    def _enqueue_refusal(self, lead, link, template):
        """Why ``lead`` cannot be sent this message, or None."""
        if not link or not (link.conversation or link.wa_id):
            return _("%s has no valid WhatsApp number.", lead.display_name)
        if link.refusal:
            return link.refusal
        if not template and not link.window_open:
            return _("%s has not written in the last 24 hours: outside that window WhatsApp only allows an "
                     "approved template.", lead.display_name)
        if template and template.category == "MARKETING" and self.env["strato.whatsapp.conversation"]._wa_id_opted_out(link.wa_id):
            return _("%s opted out of WhatsApp messages.", lead.display_name)
        return None

    @api.model
    def _outbound_values(self, lead, body, template, attachment, reply_to_wamid):
        values = {
            "lead_id": lead.id,
            "direction": "outbound",
            "state": const.STATE_QUEUED,
            "author_id": self.env.user.id,
            "next_attempt_at": fields.Datetime.now(),
            "reply_to_wamid": reply_to_wamid or False,
        }
        if template:
            values.update(message_type="template", template_id=template.id, body=template._render_text(lead),
                          payload={"components": template._components_for(lead)})
        elif attachment:
            media_type = self._media_type_for(attachment.mimetype)
            values.update(message_type=media_type, body=body or False, media_filename=attachment.name,
                          media_mime_type=attachment.mimetype, attachment_ids=[(4, attachment.id)])
        else:
            values.update(message_type="text", body=body)
        return values

    @api.model
    def _media_type_for(self, mimetype):
        main = (mimetype or "").split("/")[0]
        if main in ("image", "video", "audio"):
            return "sticker" if mimetype == "image/webp" else main
        return "document"

    def _post_outbound_to_chatter(self):
        """A note per message on its lead (no e-mail to followers), with a WhatsApp delivery notification
        that shows the message's state as Odoo shows e-mail and SMS deliveries."""
        values = []
        for message in self.filtered(lambda message: message.lead_id and not message.mail_message_id):
            note = message.lead_id._message_log(body=message._chatter_note_body())
            # Users do not write messages.
            # sudo: links the message to its own chatter note, logged just above on its lead.
            message.sudo().mail_message_id = note
            values.append({
                "mail_message_id": note.id, "author_id": note.author_id.id, "notification_type": "whatsapp",
                "res_partner_id": message.lead_id.partner_id.id or message.conversation_id.partner_id.id or False,
                "strato_whatsapp_message_id": message.id, "is_read": True,
                **self.env["mail.notification"]._strato_whatsapp_values(message),
            })
        # sudo: notifications are mail's technical records, created for the notes logged just above.
        self.env["mail.notification"].sudo().create(values)

    def _chatter_note_body(self):
        self.ensure_one()
        lines = (self._chatter_text() or "").splitlines()
        return Markup('<p class="o_strato_whatsapp"><i class="fa fa-whatsapp" title="WhatsApp"></i> %s</p>') % \
            Markup("<br>").join(lines)

    def _set_state(self, state, **values):
        """The one way an outbound message changes state (queue, send, fail, outcome unknown, retry,
        Meta's statuses): the row, then what users see of it. The send loop's batched "sent" is the same
        change made by one statement for many rows (``_mark_sent``), followed by ``_show_state`` too. Its
        claim (``sending``, the time of one HTTP call) is not shown: the icon goes from queued to the
        outcome."""
        self.write(dict(values, state=state))
        self._show_state()

    def _show_state(self):
        """Bring the delivery notifications of these messages in line with their state, and tell their
        authors' open chatters, so the icons change live."""
        outbound = self.filtered(lambda message: message.direction == "outbound" and message.mail_message_id)
        if not outbound:
            return
        Notification = self.env["mail.notification"]
        # Found by their notes alone (mail's own index): with a condition on the type too, stale statistics
        # on this busy table made the planner scan every WhatsApp notification for each batch.
        # sudo: notifications are mail's technical records; these are the messages' own.
        notifications = Notification.sudo().search_fetch(
            [("mail_message_id", "in", outbound.mail_message_id.ids)],
            ["strato_whatsapp_message_id", "author_id", "mail_message_id", "notification_status", "failure_type",
             "failure_reason", "notification_type"]).filtered("strato_whatsapp_message_id")
        by_values = {}
        for notification in notifications:
            key = tuple(sorted(Notification._strato_whatsapp_values(notification.strato_whatsapp_message_id).items()))
            if any(notification[fname] != value for fname, value in key):
                by_values.setdefault(key, []).append(notification.id)
        changed = notifications.browse()
        for key, ids in by_values.items():
            group = notifications.browse(ids)
            group.write(dict(key))  # one statement per outcome: a batch of sends is one
            changed |= group
        changed._strato_whatsapp_send_live()

    # ------------------------------------------------------------------
    # The send cron
    # ------------------------------------------------------------------
    @api.model
    def _cron_send(self):
        """Send due queued messages, account by account, within each account's throughput."""
        self._recover_stale_sending()
        accounts = self._accounts_with_due_messages()
        deadline = time.monotonic() + SEND_TIME_BUDGET
        for account in accounts:
            if not account._can_send() or not self._lock_account(account):
                continue  # waits for an administrator (the account form says why), or another worker has it
            try:
                self._send_account_queue(account, deadline)
            finally:
                self._unlock_account(account)
        cron = self.env.ref("strato_whatsapp.ir_cron_whatsapp_send")
        if self._accounts_with_due_messages().filtered(lambda account: account._can_send()):
            cron._trigger()
        else:
            self._trigger_at_next_due_time(cron)

    @api.model
    def _trigger_at_next_due_time(self, cron):
        """Messages postponed (the contact's pair limit, a retry's backoff) go out when due, not at the
        cron's next regular run a minute or more later."""
        self.env.cr.execute("""
            SELECT min(next_attempt_at) FROM strato_whatsapp_message
             WHERE state = 'queued' AND direction = 'outbound' AND next_attempt_at > %s
        """, [fields.Datetime.now()])
        due = self.env.cr.fetchone()[0]
        if due:
            cron._trigger(at=due)

    @api.model
    def _accounts_with_due_messages(self):
        self.flush_model()
        self.env.cr.execute("""
            SELECT DISTINCT account_id FROM strato_whatsapp_message
             WHERE state = 'queued' AND direction = 'outbound' AND next_attempt_at <= %s AND account_id IS NOT NULL
        """, [fields.Datetime.now()])
        # sudo: the send cron, no user behind it.
        return self.env["strato.whatsapp.account"].sudo().browse(row[0] for row in self.env.cr.fetchall()).filtered("active")

    @api.model
    def _lock_account(self, account):
        """One sender per account at a time across all workers, for the whole time it sends, so that the
        account's throttle (kept by that sender) holds globally."""
        self.env.cr.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, account.id])
        return self.env.cr.fetchone()[0]

    @api.model
    def _unlock_account(self, account):
        query = "SELECT pg_advisory_unlock(%s, %s)"
        try:
            self.env.cr.execute(query, [ADVISORY_LOCK_NAMESPACE, account.id])
        except psycopg2.errors.InFailedSqlTransaction:
            # Sending broke off with an SQL error: that transaction is lost anyway, the lock must not be,
            # or this pooled connection would keep the account from every other worker.
            self.env.cr.rollback()
            self.env.cr.execute(query, [ADVISORY_LOCK_NAMESPACE, account.id])

    @api.model
    def _send_account_queue(self, account, deadline):
        throttle = Throttle(account.messages_per_second or const.DEFAULT_THROUGHPUT_MPS, window=THROTTLE_WINDOW_SECONDS)
        pairs = PairSpacing(const.PAIR_RATE_LIMIT_SECONDS, burst=const.PAIR_BURST)
        client = account._graph_client()
        http_threads = send_pool.http_threads()
        while time.monotonic() < deadline:
            batch = self._claim(account, SEND_BATCH_SIZE)
            if not batch:
                return
            if not self._send_batch(batch, client, throttle, pairs, http_threads):
                return

    @api.model
    def _send_batch(self, batch, client, throttle, pairs, http_threads):
        """Send a claimed batch, then record every success with one statement; False when the account
        got blocked (what was not handed to Meta yet goes back to the queue).

        Each message is prepared here, its HTTP call made by ``http_threads``, and its outcome recorded
        here in batch order, with at most ``send_pool.SENDS_IN_FLIGHT`` calls pending once Meta has accepted one of
        the batch (before that, one at a time: a revoked token costs one call, not a volley)."""
        self._seed_pair_spacing(batch, pairs)
        sent, in_flight = [], deque()
        blocked = False

        def collect():
            nonlocal blocked
            message, call = in_flight.popleft()
            try:
                outcome = graph_payloads.extract_wamid(call.result())
            except graph_errors.GraphApiError as error:
                if error.code == const.PAIR_RATE_LIMIT_ERROR_CODE:
                    pairs.exhaust(message.conversation_id.id)
                outcome = message._in_lead_lang()._handle_send_error(error)
            if isinstance(outcome, str):
                sent.append((message, outcome))
            elif outcome is False:
                blocked = True

        for index, message in enumerate(batch):
            prepared = message._prepare_send(client, pairs)
            if isinstance(prepared, dict):
                in_flight.append((message, http_threads.submit(send_pool.paced_send, throttle, client, prepared)))
                pairs.record(message.conversation_id.id)
            elif prepared is False:
                blocked = True
            limit = send_pool.SENDS_IN_FLIGHT if sent else 1
            while in_flight and (blocked or len(in_flight) >= limit or in_flight[0][1].done()):
                collect()
            if blocked:
                for waiting in batch[index + 1:]:
                    waiting._requeue(0, count_attempt=False)
                break
        while in_flight:
            collect()
        self._mark_sent(sent)
        self._commit()
        return not blocked

    @api.model
    def _claim(self, account, size):
        """Take due messages of ``account`` (skipping rows another worker holds), mark them sending, commit."""
        self.flush_model()
        self.env.cr.execute("""
            SELECT id FROM strato_whatsapp_message
             WHERE state = 'queued' AND direction = 'outbound' AND account_id = %s AND next_attempt_at <= %s
             ORDER BY next_attempt_at, id
             LIMIT %s
               FOR NO KEY UPDATE SKIP LOCKED
        """, [account.id, fields.Datetime.now(), size])
        batch = self.browse(row[0] for row in self.env.cr.fetchall())
        if batch:
            self.env.cr.execute("""
                UPDATE strato_whatsapp_message
                   SET state = 'sending', sending_started_at = %s, attempt_count = COALESCE(attempt_count, 0) + 1
                 WHERE id IN %s
            """, [fields.Datetime.now(), tuple(batch.ids)])
            batch.invalidate_recordset(["state", "sending_started_at", "attempt_count"])
            self._commit()
            # Hold the rows while sending: a status webhook for one of them waits for our commit (and is
            # retried) instead of making our final update fail and roll the whole batch back.
            self.env.cr.execute("SELECT id FROM strato_whatsapp_message WHERE id IN %s FOR NO KEY UPDATE",
                                [tuple(batch.ids)])
        return batch

    @api.model
    def _commit(self):
        if not getattr(threading.current_thread(), "testing", False):
            self.env.cr.commit()

    @api.model
    def _seed_pair_spacing(self, batch, pairs):
        # The sends of the last full refill of a burst, oldest first, decide what is left of each bucket.
        self.env.cr.execute("""
            SELECT conversation_id, EXTRACT(EPOCH FROM (%s - sent_at))
              FROM strato_whatsapp_message
             WHERE conversation_id IN %s AND direction = 'outbound' AND sent_at > %s
             ORDER BY sent_at
        """, [fields.Datetime.now(), tuple(batch.conversation_id.ids),
              fields.Datetime.now() - timedelta(seconds=const.PAIR_RATE_LIMIT_SECONDS * const.PAIR_BURST)])
        for conversation_id, seconds_ago in self.env.cr.fetchall():
            pairs.seed(conversation_id, float(seconds_ago))

    def _prepare_send(self, client, pairs):
        """The Graph API body to send for this claimed message, or what became of it instead: True when it
        was dealt with (refused, postponed, failed), False when the whole account must stop."""
        self.ensure_one()
        if self._send_refusal():
            # Written for the agents of the lead, not in the cron user's language.
            message = self._in_lead_lang()
            message._fail(*message._send_refusal())
            return True
        pair_wait = pairs.wait_time(self.conversation_id.id)
        if pair_wait:
            self._requeue(pair_wait, count_attempt=False)
            return True
        try:
            return self._request_payload(client)
        except graph_errors.GraphApiError as error:
            return self._handle_send_error(error)
        except UserError as error:  # a template value missing for the lead, a field no longer allowed...
            self._fail("template" if self.message_type == "template" else "parameter", str(error))
            return True
        except Exception as error:  # noqa: BLE001 - one broken message must not abort the batch
            _logger.exception("WhatsApp message %s could not be prepared", self.id)
            self._in_lead_lang()._fail("unknown", _(
                "The message could not be prepared for sending (an error in Odoo, logged for the "
                "administrator). Try again, or send it another way."), details=repr(error)[:500])
            return True

    @api.model
    def _mark_sent(self, sent):
        """Record accepted sends ([(message, wamid)]) in one statement: the hot path of the queue. An ORM
        shortcut kept for speed (one UPDATE per batch instead of a write per message); what users see of
        the new state follows through ``_show_state``, as after ``_set_state``."""
        if not sent:
            return
        messages = self.browse([message.id for message, _wamid in sent])
        self.env.cr.execute("""
            UPDATE strato_whatsapp_message AS message
               SET state = 'sent', wamid = sent.wamid, sent_at = %s, next_attempt_at = NULL,
                   failure_type = NULL, error_code = 0, error_message = NULL, error_details = NULL,
                   write_date = %s, write_uid = %s
              FROM unnest(%s::int[], %s::varchar[]) AS sent(id, wamid)
             WHERE message.id = sent.id AND message.state = 'sending'
        """, [fields.Datetime.now(), fields.Datetime.now(), self.env.uid,
              [message.id for message, _wamid in sent], [wamid for _message, wamid in sent]])
        messages.invalidate_recordset(["state", "wamid", "sent_at", "next_attempt_at", "failure_type",
                                       "error_code", "error_message", "error_details", "write_date", "write_uid"])
        messages._show_state()
        self.env["strato.whatsapp.early.status"]._apply_for(messages)

    def _send_refusal(self):
        """(failure type, reason) when the rules forbid sending now, else None."""
        conversation = self.conversation_id
        if not (conversation.wa_id or conversation.bsuid):
            return "invalid_number", _("The contact has no valid WhatsApp number.")
        if self.message_type == "template" and not self.template_id:
            return "template", _("A template message needs its template.")
        if self.message_type == "text" and not (self.body or "").strip():
            return "parameter", _("The message has no text.")
        if self.message_type not in ("text", "template", *const.MEDIA_TYPES):
            return "parameter", _("Messages of this type cannot be sent from Odoo.")
        # sudo: send time (cron); attachments of queued messages are read to be sent, not shown.
        if self.message_type in const.MEDIA_TYPES and not self.media_id and not self.attachment_ids[:1].sudo().raw:
            return "parameter", _("The file to send is gone.")
        if self.message_type != "template" and not conversation.window_open:
            return "window_closed", _("The 24-hour reply window closed before the message went out; "
                                      "send an approved template instead.")
        moved = self._moved_refusal()
        if moved:
            return "recipient", moved
        template = self.template_id
        if template and template.status != "approved":
            return "template", _("Template %s is no longer approved by Meta.", template.display_name)
        if template.category == "MARKETING" and conversation._opted_out():
            return "opted_out", _("The contact opted out of WhatsApp marketing messages.")
        return None

    def _moved_refusal(self):
        """The message's lead no longer holds its conversation, which another open lead now does (the
        contact's answers go there): it is not sent from the old lead, retried or not."""
        owner = self.conversation_id.lead_id
        if self.lead_id and owner and owner != self.lead_id and owner._whatsapp_is_open():
            return _("The contact's conversation has moved to the lead “%(lead)s” of %(user)s since this message "
                     "was written; write from that lead.", lead=owner.name,
                     user=owner.user_id.name or _("another salesperson"))
        return None

    def _request_payload(self, client):
        """The Graph API body for this message, built now from its own fields (text, file, reply-to,
        recipient): what the record says when it is sent is what goes out. Only a template's parameters
        are frozen, as they were rendered when the message was queued (see ``payload``)."""
        conversation = self.conversation_id
        common = {"to": conversation.wa_id or None, "bsuid": None if conversation.wa_id else conversation.bsuid,
                  "reply_to": self.reply_to_wamid or None, "callback_data": f"{CALLBACK_PREFIX}{self.id}"}
        if self.message_type == "template":
            template = self.template_id
            request = graph_payloads.build_template_payload(
                name=template.name, language=template.language, components=self._template_components(), **common)
            request["template"] = template._ready_to_send(client, request["template"])
            return request
        if self.message_type in const.MEDIA_TYPES:
            return graph_payloads.build_media_payload(
                media_type=self.message_type, media_id=self._uploaded_media_id(client),
                caption=(self.body or None) if self.message_type in const.MEDIA_CAPTION_TYPES else None,
                filename=self.media_filename or None, **common)
        return graph_payloads.build_text_payload(body=self.body, preview_url="http" in self.body, **common)

    def _template_components(self):
        """Meta's parameter blocks: frozen at Send, else (a message created without them, e.g. by an
        import) rendered for the lead now."""
        frozen = self.payload or {}
        if "components" in frozen:
            return frozen["components"]
        if isinstance(frozen.get("template"), dict):  # queued before the parameters were kept on their own
            return frozen["template"].get("components") or []
        return self.template_id._components_for(self.lead_id)

    def _uploaded_media_id(self, client):
        if not self.media_id:
            # sudo: send time (cron); the attachment is uploaded to Meta, not shown to anyone.
            attachment = self.attachment_ids[:1].sudo()
            self.media_id = client.upload_media(attachment.raw, attachment.mimetype, attachment.name)["id"]
        return self.media_id

    def _handle_send_error(self, error):
        if isinstance(error, graph_errors.OutcomeUnknownError):
            self._mark_outcome_unknown(_("No answer from Meta after the message was handed over (%s): it may or "
                                         "may not have been sent. Check with the contact before retrying.", error.message))
            return True
        if error.blocks_account:
            self._block_account(error)
            return False
        if error.retryable:
            if self.attempt_count < const.RETRY_MAX_ATTEMPTS:
                self._requeue(graph_errors.retry_delay(self.attempt_count, error.retry_after))
            else:
                self._fail("retries_exhausted", _(
                    "Meta was busy or could not be reached %(count)s times in a row. Try again later.",
                    count=self.attempt_count), error.code, self._error_details(error))
            return True
        if isinstance(error, graph_errors.MarketingOptOutError):
            number = phone.e164_from_wa_id(self.conversation_id.wa_id) if self.conversation_id.wa_id else None
            self.lead_id._whatsapp_set_opt_out(True, number,
                                                _("Meta reports the contact stopped marketing messages."))
        self._fail(self._failure_type_for(error), self._error_sentence(error), error.code, self._error_details(error))
        return True

    @api.model
    def _failure_type_for(self, error):
        return {
            const.ERROR_WINDOW_CLOSED: "window_closed",
            const.ERROR_RECIPIENT: "recipient",
            const.ERROR_INVALID_PARAMETER: "parameter",
            const.ERROR_TEMPLATE: "template",
            const.ERROR_MARKETING_OPT_OUT: "opted_out",
        }.get(error.category, "unknown")

    def _requeue(self, delay, count_attempt=True):
        jitter = random.uniform(0, min(delay, 10) * 0.2)
        values = {"next_attempt_at": fields.Datetime.now() + timedelta(seconds=delay + jitter)}
        if not count_attempt:
            values["attempt_count"] = max(self.attempt_count - 1, 0)
        self._set_state(const.STATE_QUEUED, **values)

    def _fail(self, failure_type, reason, code=None, details=False):
        self._set_state(const.STATE_FAILED, failure_type=failure_type, error_message=reason, error_code=code or 0,
                        error_details=details, failed_at=fields.Datetime.now(), next_attempt_at=False)
        self._log_failure_on_lead()

    def _block_account(self, error):
        """Meta refuses the account itself: stop sending for it (once) and tell its administrators."""
        self._requeue(0, count_attempt=False)
        # sudo: send time (cron): Meta refused the account itself; stopping it is the queue's own decision.
        self.account_id.sudo()._stop_sending(error)

    def _mark_outcome_unknown(self, reason):
        self._set_state(const.STATE_UNKNOWN, error_message=reason, next_attempt_at=False)

    @api.model
    def _recover_stale_sending(self):
        """Messages left ``sending`` by a worker that died: their fate is unknown, so never resend blindly."""
        self.flush_model()
        self.env.cr.execute("""
            SELECT id FROM strato_whatsapp_message
             WHERE state = 'sending' AND sending_started_at < %s
               FOR NO KEY UPDATE SKIP LOCKED
        """, [fields.Datetime.now() - STALE_SENDING_AFTER])
        stale = self.browse(row[0] for row in self.env.cr.fetchall())
        if stale:
            _logger.warning("WhatsApp: %s message(s) left sending by a stopped worker marked outcome unknown", len(stale))
            stale._mark_outcome_unknown(_(
                "The sender stopped while this message was being handed to Meta: it may or may not have "
                "been sent. Check with the contact before retrying."))

    def action_retry(self):
        """Queue failed or unknown messages again (the agent decided; rules are checked again)."""
        self.check_access("read")
        retryable = self.filtered(lambda message: message.direction == "outbound" and message.state in const.FAILED_STATES)
        if not retryable:
            raise UserError(_("Only failed messages, or messages whose outcome is unknown, can be retried."))
        retryable.lead_id.check_access("write")
        for message in retryable:
            # The conversation may have moved to a lead the caller cannot read.
            # sudo: only a sentence naming that lead comes out.
            refusal = message.sudo()._moved_refusal()
            if refusal:
                raise UserError(refusal)
        if retryable.filtered(lambda message: not message.lead_id) and not self.env.user.has_group(
                "strato_whatsapp.group_whatsapp_admin"):
            raise AccessError(_("Only a WhatsApp administrator can retry a message that belongs to no lead."))
        # Users never write messages, the queue does, and these values are the queue's own.
        # sudo: the caller may write to the messages' leads (checked above).
        retryable.sudo()._set_state(const.STATE_QUEUED, next_attempt_at=fields.Datetime.now(), attempt_count=0,
                                    failure_type=False, error_code=0, error_message=False, error_details=False,
                                    failed_at=False)
        self.env.ref("strato_whatsapp.ir_cron_whatsapp_send").sudo()._trigger()  # sudo: the addon's own cron

    def action_cancel(self):
        """Stop messages still waiting in the queue (the agent changed their mind). A message the send
        cron has already taken is on its way: it is left alone, and the caller told."""
        self.check_access("read")
        outbound = self.filtered(lambda message: message.direction == "outbound")
        waiting = outbound.filtered(lambda message: message.state == const.STATE_QUEUED)
        if not waiting:
            raise UserError(_("Only messages still waiting to be sent can be cancelled."))
        waiting.lead_id.check_access("write")
        if waiting.filtered(lambda message: not message.lead_id) and not self.env.user.has_group(
                "strato_whatsapp.group_whatsapp_admin"):
            raise AccessError(_("Only a WhatsApp administrator can cancel a message that belongs to no lead."))
        # Rows the send cron holds (claimed, being sent) are skipped, never waited for: those are going out.
        self.env.flush_all()
        self.env.cr.execute("""
            SELECT id FROM strato_whatsapp_message
             WHERE id IN %s AND state = %s
               FOR NO KEY UPDATE SKIP LOCKED
        """, [tuple(waiting.ids), const.STATE_QUEUED])
        cancelled = self.browse(row[0] for row in self.env.cr.fetchall())
        # sudo: the caller may write to the messages' leads (checked above); the state is the queue's own.
        cancelled.sudo()._set_state(const.STATE_CANCELLED, next_attempt_at=False)
        gone = len(outbound) - len(cancelled)
        if not cancelled:
            raise UserError(_("The message is already being sent: it can no longer be cancelled."))
        if not gone:
            return True
        return {"type": "ir.actions.client", "tag": "display_notification", "params": {
            "type": "warning", "title": _("Cancelled: %s", len(cancelled)),
            "message": _("%s of the selected messages had already gone out, or were on their way, and were "
                         "left as they are.", gone),
            "next": {"type": "ir.actions.client", "tag": "soft_reload"}}}

    # ------------------------------------------------------------------
    # The chat panel
    # ------------------------------------------------------------------
    def _chat_values(self):
        """The messages as the chat panel draws them, oldest first."""
        quoted = self._chat_quoted_messages()
        return [message._chat_message_values(quoted) for message in self.sorted(lambda m: (m.message_at, m.id))]

    def _chat_quoted_messages(self):
        wamids = [wamid for wamid in self.mapped("reply_to_wamid") if wamid]
        if not wamids:
            return {}
        # Within the conversation: a wamid named by the contact must not pull in another contact's message.
        quoted = self.search([("conversation_id", "in", self.conversation_id.ids), ("wamid", "in", wamids)])
        return {(message.conversation_id.id, message.wamid): message for message in quoted}

    def _chat_message_values(self, quoted):
        self.ensure_one()
        reply_to = quoted.get((self.conversation_id.id, self.reply_to_wamid))
        values = {
            "id": self.id,
            "direction": self.direction,
            "type": self.message_type,
            "body": self._chat_body(),
            "date": fields.Datetime.to_string(self.message_at),
            "state": self.state,
            "state_label": dict(self._fields["state"]._description_selection(self.env)).get(self.state),
            "error": self._chat_error(),
            "can_retry": self.direction == "outbound" and self.state in const.FAILED_STATES,
            "can_cancel": self.direction == "outbound" and self.state == const.STATE_QUEUED,
            "is_failed": self.state in const.FAILED_STATES,
            "is_waiting": self.state in (const.STATE_QUEUED, const.STATE_SENDING),
            "is_cancelled": self.state == const.STATE_CANCELLED,
            "reaction": self.reaction_emoji or "",
            "author": self.author_id.name or "",
            "template": self.template_id.name or "",
            "is_voice": self.is_voice,
            "media_state": self.media_state,
            "filename": self.media_filename or "",
            "map_url": self._chat_map_url(),
            "reply_to": reply_to and (reply_to._chat_text_snippet()) or "",
            "attachments": [{
                "id": attachment.id,
                "name": attachment.name,
                "mimetype": attachment.mimetype or "",
                "url": f"/web/content/{attachment.id}",
            } for attachment in self.attachment_ids],
        }
        return values

    def _chat_body(self):
        if self.message_type == "location":
            # The body ends with the map link, which the panel shows as a button instead.
            return "\n".join(line for line in (self.body or "").splitlines() if not line.startswith("http"))
        return self.body or ""

    def _chat_text_snippet(self):
        text = self._chatter_text() or ""
        return text if len(text) <= 120 else text[:119] + "…"

    def _chat_map_url(self):
        if self.message_type != "location" or not (self.latitude or self.longitude):
            return ""
        try:
            return webhook.map_link(self.latitude, self.longitude)
        except ValueError:
            return ""

    def _chat_error(self):
        if self.state not in const.FAILED_STATES:
            return ""
        return self.error_message or ""

    # ------------------------------------------------------------------
    # Read by an agent: in Odoo, and (if the number wants it) at Meta
    # ------------------------------------------------------------------
    def _mark_read_by_agent(self):
        """The agent read these received messages: recorded at once, applied by the processing cron (Odoo
        and Meta's read receipt), which alone writes received messages; see strato.whatsapp.read.request."""
        unread = self.filtered(lambda message: message.direction == "inbound" and not message.is_read)
        self.env["strato.whatsapp.read.request"]._request(unread)
        return unread

    def _queue_read_receipts(self):
        wanted = self.filtered(lambda message: message.wamid and not message.read_receipt_state
                               and message.direction == "inbound" and message.account_id.send_read_receipts)
        if wanted:
            # sudo: same messages as above; the receipt state is the read-receipt queue's own.
            wanted.sudo().write({"read_receipt_state": "pending"})
            # sudo: the addon's own cron; waking it sends only receipts already queued.
            self.env.ref("strato_whatsapp.ir_cron_whatsapp_read_receipts").sudo()._trigger()

    @api.model
    def _cron_send_read_receipts(self):
        """Tell Meta which received messages agents have read, one call per conversation.

        Marking a message read at Meta marks the earlier ones of the conversation too, so only the
        newest pending message of each conversation is sent.
        """
        last_id = 0  # a receipt left pending after an error waits for the next run
        while True:
            batch = self._claim_read_receipts(last_id, READ_RECEIPT_BATCH_SIZE)
            if not batch:
                return
            last_id = max(batch.ids)
            for conversation in batch.conversation_id:
                batch.filtered(lambda message: message.conversation_id == conversation)._send_read_receipt()
            if not getattr(threading.current_thread(), "testing", False):
                self.env.cr.commit()

    @api.model
    def _claim_read_receipts(self, after_id, size):
        self.flush_model()
        self.env.cr.execute("""
            SELECT id FROM strato_whatsapp_message
             WHERE read_receipt_state = 'pending' AND id > %s
             ORDER BY id
             LIMIT %s
               FOR NO KEY UPDATE SKIP LOCKED
        """, [after_id, size])
        return self.browse(row[0] for row in self.env.cr.fetchall())

    def _send_read_receipt(self):
        """Send the receipt for the newest of these messages (all of one conversation)."""
        newest = self.sorted(lambda message: (message.message_at, message.id))[-1]
        try:
            newest.account_id._graph_client().mark_as_read(newest.wamid)
        except graph_errors.GraphApiError as error:
            self._read_receipt_failed(error)
            return
        except Exception as error:  # noqa: BLE001 - e.g. no token yet: retried like a network error
            self._read_receipt_failed(graph_errors.GraphApiError(str(error), retryable=True))
            return
        self.write({"read_receipt_state": "done"})

    def _read_receipt_failed(self, error):
        attempts = max(self.mapped("read_receipt_attempts")) + 1
        if error.retryable and attempts < READ_RECEIPT_MAX_ATTEMPTS and not error.blocks_account:
            self.write({"read_receipt_attempts": attempts})
            return
        # A receipt is a courtesy: after a few tries it is dropped, never blocking anything else.
        _logger.info("WhatsApp read receipt for %s message(s) not sent: %s", len(self), error.message)
        self.write({"read_receipt_state": "failed", "read_receipt_attempts": attempts})
