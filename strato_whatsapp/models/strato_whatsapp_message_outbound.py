import logging
import os
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg2
from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools.sql import create_index

from .. import const
from ..tools import graph_api, phone
from ..tools.throttle import PairSpacing, Throttle
from .strato_whatsapp_message import CALLBACK_PREFIX

_logger = logging.getLogger(__name__)

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
# HTTP calls of one account in flight at once (threads that only talk HTTP; the ORM work stays in the
# cron's thread): Meta's answer takes longer than preparing the next message, so they overlap.
SENDS_IN_FLIGHT = 4
# Meta counts a number's throughput as its calls arrive; the throttle's window is this much longer than
# a second so that thread scheduling between the throttle and the wire cannot squeeze one more call in.
THROTTLE_WINDOW_SECONDS = 1.01
SEND_TIME_BUDGET = 50  # seconds per cron run and account; the run re-triggers itself while work remains
STALE_SENDING_AFTER = timedelta(minutes=2)
# The account lock: held by the sending worker's session across its commits, released when it is done
# with the account, or with the connection if the worker dies.
ADVISORY_LOCK_NAMESPACE = 0x57A7


# Enough threads for a few accounts sending at once in one process (threaded server): a thread waits on
# its account's throttle before its call.
HTTP_THREADS = 4 * SENDS_IN_FLIGHT
_http_pool = {"pid": None, "executor": None}
_http_pool_lock = threading.Lock()


def _http_threads():
    """This process's HTTP threads for sends; they live as long as the process, and so do their keep-alive
    connections to Meta (a new pool per run would open new TLS connections, right after the throttle)."""
    with _http_pool_lock:
        if _http_pool["pid"] != os.getpid():  # a prefork worker does not inherit its parent's threads
            _http_pool["executor"] = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="strato_whatsapp_send")
            _http_pool["pid"] = os.getpid()
        return _http_pool["executor"]


def _paced_send(throttle, client, payload):
    # Runs in an HTTP thread: paced right before the call, so that the calls leave at the throttle's pace
    # however the threads are scheduled.
    throttle.wait()
    return client.send_message(payload)


class StratoWhatsappMessageOutbound(models.Model):
    """The send queue: outbound messages from ``queued`` to ``sent`` or ``failed``.

    queued -> sending -> sent (wamid stored) | failed (code, text) | queued again later (retryable
    errors: exponential backoff with jitter, Retry-After honoured, up to a maximum of attempts).
    A row is marked ``sending`` and committed before its HTTP call; one left ``sending`` by a worker that
    died is never resent blindly: it becomes ``unknown`` (outcome unknown), visible, with a retry button.
    """

    _inherit = "strato.whatsapp.message"

    payload = fields.Json(
        "Frozen Template Parameters", copy=False,
        help="For a template message: its parameters (header, body and buttons) as rendered for the lead when "
             "the message was queued, so what the agent previewed is what goes out. Everything else (the "
             "recipient, the text, the file, the message it replies to) is read from the message when it is "
             "sent. Empty for other messages; a template message without it is rendered at send time.")
    failure_type = fields.Selection(FAILURE_TYPES, readonly=True, copy=False)
    sending_started_at = fields.Datetime(readonly=True, copy=False)

    def init(self):
        super().init()
        # The claim query's own index: the queue is a sliver of a table that keeps every message ever
        # exchanged, and this keeps claiming a batch at a fraction of a millisecond however large it grows.
        create_index(self.env.cr, "strato_whatsapp_message_send_queue_index", self._table,
                     ["account_id", "next_attempt_at", "id"], where="state = 'queued' AND direction = 'outbound'")

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
        domain = [("direction", "=", "outbound"), ("state", "not in", ("failed",)),
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
            "state": "queued",
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
        http_threads = _http_threads()
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
        here in batch order, with at most ``SENDS_IN_FLIGHT`` calls pending once Meta has accepted one of
        the batch (before that, one at a time: a revoked token costs one call, not a volley)."""
        self._seed_pair_spacing(batch, pairs)
        sent, in_flight = [], deque()
        blocked = False

        def collect():
            nonlocal blocked
            message, call = in_flight.popleft()
            try:
                outcome = graph_api.extract_wamid(call.result())
            except graph_api.GraphApiError as error:
                if error.code == const.PAIR_RATE_LIMIT_ERROR_CODE:
                    pairs.exhaust(message.conversation_id.id)
                outcome = message._handle_send_error(error)
            if isinstance(outcome, str):
                sent.append((message, outcome))
            elif outcome is False:
                blocked = True

        for index, message in enumerate(batch):
            prepared = message._prepare_send(client, pairs)
            if isinstance(prepared, dict):
                in_flight.append((message, http_threads.submit(_paced_send, throttle, client, prepared)))
                pairs.record(message.conversation_id.id)
            elif prepared is False:
                blocked = True
            limit = SENDS_IN_FLIGHT if sent else 1
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
        refusal = self._send_refusal()
        if refusal:
            self._fail(*refusal)
            return True
        pair_wait = pairs.wait_time(self.conversation_id.id)
        if pair_wait:
            self._requeue(pair_wait, count_attempt=False)
            return True
        try:
            return self._request_payload(client)
        except graph_api.GraphApiError as error:
            return self._handle_send_error(error)
        except UserError as error:  # a template value missing for the lead, a field no longer allowed...
            self._fail("template" if self.message_type == "template" else "parameter", str(error))
            return True
        except Exception as error:  # noqa: BLE001 - one broken message must not abort the batch
            _logger.exception("WhatsApp message %s could not be prepared", self.id)
            self._fail("unknown", _("The message could not be prepared for sending: %s", error))
            return True

    @api.model
    def _mark_sent(self, sent):
        """Record accepted sends ([(message, wamid)]) in one statement: the hot path of the queue."""
        if not sent:
            return
        messages = self.browse([message.id for message, _wamid in sent])
        self.env.cr.execute("""
            UPDATE strato_whatsapp_message AS message
               SET state = 'sent', wamid = sent.wamid, sent_at = %s, next_attempt_at = NULL,
                   failure_type = NULL, error_code = 0, error_message = NULL, write_date = %s, write_uid = %s
              FROM unnest(%s::int[], %s::varchar[]) AS sent(id, wamid)
             WHERE message.id = sent.id AND message.state = 'sending'
        """, [fields.Datetime.now(), fields.Datetime.now(), self.env.uid,
              [message.id for message, _wamid in sent], [wamid for _message, wamid in sent]])
        messages.invalidate_recordset(["state", "wamid", "sent_at", "next_attempt_at", "failure_type",
                                       "error_code", "error_message", "write_date", "write_uid"])
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
            request = graph_api.build_template_payload(
                name=template.name, language=template.language, components=self._template_components(), **common)
            request["template"] = template._ready_to_send(client, request["template"])
            return request
        if self.message_type in const.MEDIA_TYPES:
            return graph_api.build_media_payload(
                media_type=self.message_type, media_id=self._uploaded_media_id(client),
                caption=(self.body or None) if self.message_type in const.MEDIA_CAPTION_TYPES else None,
                filename=self.media_filename or None, **common)
        return graph_api.build_text_payload(body=self.body, preview_url="http" in self.body, **common)

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
        if isinstance(error, graph_api.OutcomeUnknownError):
            self._mark_outcome_unknown(_("No answer from Meta after the message was handed over (%s): it may or "
                                         "may not have been sent. Check with the contact before retrying.", error.message))
            return True
        if error.blocks_account:
            self._block_account(error)
            return False
        if error.retryable:
            if self.attempt_count < const.RETRY_MAX_ATTEMPTS:
                self._requeue(graph_api.retry_delay(self.attempt_count, error.retry_after))
            else:
                self._fail("retries_exhausted", _("Meta kept refusing after %(count)s attempts: %(error)s",
                                                  count=self.attempt_count, error=error.message), error.code)
            return True
        if isinstance(error, graph_api.MarketingOptOutError):
            number = phone.e164_from_wa_id(self.conversation_id.wa_id) if self.conversation_id.wa_id else None
            self.lead_id._whatsapp_set_opt_out(True, number,
                                                _("Meta reports the contact stopped marketing messages."))
        self._fail(self._failure_type_for(error), str(error), error.code)
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
        self._set_state("queued", **values)

    def _fail(self, failure_type, reason, code=None):
        self._set_state("failed", failure_type=failure_type, error_message=reason, error_code=code or 0,
                        failed_at=fields.Datetime.now(), next_attempt_at=False)
        self._log_failure_on_lead()

    def _block_account(self, error):
        """Meta refuses the account itself: stop sending for it (once) and tell its administrators."""
        self._requeue(0, count_attempt=False)
        # sudo: send time (cron): Meta refused the account itself; stopping it is the queue's own decision.
        self.account_id.sudo()._stop_sending(error)

    def _mark_outcome_unknown(self, reason):
        self._set_state("unknown", error_message=reason, next_attempt_at=False)

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
        retryable = self.filtered(lambda message: message.direction == "outbound" and message.state in ("failed", "unknown"))
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
        retryable.sudo()._set_state("queued", next_attempt_at=fields.Datetime.now(), attempt_count=0,
                                    failure_type=False, error_code=0, error_message=False, failed_at=False)
        self.env.ref("strato_whatsapp.ir_cron_whatsapp_send").sudo()._trigger()  # sudo: the addon's own cron
