import logging
import mimetypes
import threading
import time
from datetime import timedelta

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.addons.base_automation.models.base_automation import CREATE_TRIGGERS
from odoo.tools import SQL
from odoo.tools.mail import plaintext2html

from .. import const
from ..tools import graph_api, phone, webhook

_logger = logging.getLogger(__name__)

# Our message id travels to Meta in biz_opaque_callback_data and comes back on every status, so a
# status that beats the send transaction's commit can still find its message.
CALLBACK_PREFIX = "swa:"

# Outcome unknown: the send may or may not have reached Meta; any status proves it did.
STATE_RANK = {**const.STATE_RANK, "unknown": const.STATE_RANK[const.STATE_SENDING]}

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
    ("queued", "Queued"),
    ("sending", "Sending"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("read", "Read"),
    ("failed", "Failed"),
    ("received", "Received"),
    ("unknown", "Outcome Unknown"),
]


class StratoWhatsappMessage(models.Model):
    """One WhatsApp message, received or sent, and where it stands."""

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
    state = fields.Selection(MESSAGE_STATES, required=True, default="queued", index=True, copy=False)
    is_read = fields.Boolean(
        "Read by Agent", default=False, help="For received messages: an agent has seen it.")
    sent_at = fields.Datetime(readonly=True, copy=False)
    delivered_at = fields.Datetime(readonly=True, copy=False)
    read_at = fields.Datetime(readonly=True, copy=False)
    failed_at = fields.Datetime(readonly=True, copy=False)
    error_code = fields.Integer("Error Code", readonly=True, copy=False, help="Meta's error code.")
    error_message = fields.Text(readonly=True, copy=False)
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

    _sql_constraints = [
        ("account_wamid_uniq", "unique(account_id, wamid)", "This WhatsApp message is already stored."),
    ]

    @api.model_create_multi
    def create(self, vals_list):
        """Whoever creates an outbound message in state ``queued`` (the composer, the chat, a server
        action, another module, an import, an integration over RPC), the send cron picks it up: without a
        due time it is due now, and the cron is woken. Its note and delivery status appear on its lead."""
        now = fields.Datetime.now()
        for vals in vals_list:
            if vals.get("direction") == "outbound" and vals.get("state", "queued") == "queued" \
                    and not vals.get("next_attempt_at"):
                vals["next_attempt_at"] = now
        messages = self._create_with_leads(vals_list)
        outbound = messages.filtered(lambda message: message.direction == "outbound")
        if outbound:
            outbound._post_outbound_to_chatter()
            outbound._touch_conversations_outbound()
            if any(message.state == "queued" for message in outbound):
                # sudo: the addon's own cron; waking it sends nothing the queue would not send anyway.
                self.env.ref("strato_whatsapp.ir_cron_whatsapp_send").sudo()._trigger()
        if any(vals.get("wamid") and vals.get("direction") == "outbound" for vals in vals_list):
            self.env["strato.whatsapp.early.status"]._apply_for(outbound)
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
            "state": "received",
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
        data = self.env.cr.precommit.data
        if "strato_whatsapp.chat" not in data:
            data["strato_whatsapp.chat"] = {}
            self.env.cr.precommit.add(self._send_chat_notifications)
        for message in self.filtered("lead_id"):
            data["strato_whatsapp.chat"].setdefault(message.lead_id.id, set()).add(message.id)

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
            if self.state in const.FAILED_ALLOWED_FROM or self.state == "unknown":
                values.update(self._in_lead_lang()._failure_values(event))
        elif state and STATE_RANK.get(state, -1) > STATE_RANK.get(self.state, 99):
            values["state"] = state
        if state and state != const.STATE_FAILED:
            timestamp_field = f"{state}_at"
            if not self[timestamp_field]:
                values[timestamp_field] = event.timestamp
        values = {key: value for key, value in values.items() if self[key] != value}
        new_state = values.pop("state", None)
        if new_state:
            self._set_state(new_state, **values)
            if new_state == "failed":
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
        error = event.errors[0] if event.errors else None
        text = " ".join(filter(None, [error and (error.title or error.message),
                                      error and error.details])) if error else ""
        return {
            "state": "failed",
            "failed_at": event.timestamp,
            "error_code": error.code if error and error.code else 0,
            "error_message": text or _("Meta reported the message as failed without a reason."),
        }

    def _log_failure_on_lead(self):
        for message in self.filtered("lead_id"):
            body = Markup("<p>%s</p><p>%s</p>") % (
                message._in_lead_lang().env._("A WhatsApp message could not be delivered (error %s):",
                                              message.error_code or "?"),
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
                raise graph_api.MediaError("The media file is larger than allowed", retryable=False,
                                           details=f"limit {max_bytes} bytes")
            content = client.download_media(info["url"], max_bytes=max_bytes, sha256=info.get("sha256"))
        except graph_api.GraphApiError as error:
            self._media_failed(error, max_bytes)
            return
        except Exception as error:  # noqa: BLE001 - e.g. no token: retried like a network error
            self._media_failed(graph_api.GraphApiError(str(error), retryable=True), max_bytes)
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
                        timedelta(seconds=graph_api.retry_delay(attempts, error.retry_after))})
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
