from datetime import datetime, timedelta
from typing import NamedTuple

import babel.dates
import pytz

from odoo import _, api, fields, models
from odoo.tools.misc import babel_locale_parse, format_date

from .. import const
from ..tools import phone

# Meta's customer service window: free-form messages are allowed for 24 h after the user's last message.
SERVICE_WINDOW = timedelta(hours=24)
PREVIEW_LENGTH = 80
# WhatsApp profile names are short (25 characters in the app); anything longer is cut here.
PROFILE_NAME_MAX = 128


# A spreadsheet takes a cell starting with one of these as a formula: a WhatsApp profile name such as
# "=HYPERLINK(...)" would become one in every export of the leads it names.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _inert_name(name):
    """``name`` (chosen by the contact in WhatsApp) without the leading characters that make a formula, and
    no longer than a name can be in WhatsApp (a forged body could carry megabytes)."""
    name = (name or "").strip()
    while name.startswith(FORMULA_PREFIXES):
        name = name[1:].lstrip()
    return name[:PROFILE_NAME_MAX]


class StratoWhatsappConversation(models.Model):
    """The thread between one of our WhatsApp numbers and one WhatsApp user."""

    _name = "strato.whatsapp.conversation"
    _description = "WhatsApp Conversation"
    _order = "last_message_at desc nulls last, id desc"
    _rec_names_search = ["lead_id", "wa_id", "profile_name"]

    account_id = fields.Many2one(
        "strato.whatsapp.account", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_id.company_id", store=True, index=True)
    lead_id = fields.Many2one("crm.lead", ondelete="set null", index="btree_not_null")
    user_id = fields.Many2one(related="lead_id.user_id", string="Salesperson")
    partner_id = fields.Many2one("res.partner", ondelete="set null", index="btree_not_null")
    wa_id = fields.Char(
        "WhatsApp ID", index="btree_not_null",
        help="The user's number as WhatsApp identifies it: the digits of the E.164 number, without '+'.")
    bsuid = fields.Char(
        "Business-Scoped User ID", index="btree_not_null",
        help="Meta's id for a user who shares a username instead of a phone number.")
    profile_name = fields.Char(help="The name the user set in WhatsApp.")
    state = fields.Selection([("open", "Open"), ("closed", "Closed")], required=True, default="open")
    last_message_at = fields.Datetime(readonly=True, index=True)
    last_inbound_at = fields.Datetime("Last Message From Contact", readonly=True)
    window_open = fields.Boolean(
        "Reply Window Open", compute="_compute_window", search="_search_window_open",
        help="WhatsApp allows free text for 24 hours after the contact's last message; "
             "outside it only approved templates can be sent.")
    window_expires_at = fields.Datetime("Reply Window Closes", compute="_compute_window")
    message_ids = fields.One2many("strato.whatsapp.message", "conversation_id")
    unread_count = fields.Integer(compute="_compute_unread_count", store=True)

    # What the inbox (list and kanban of conversations) shows and filters on.
    has_unread = fields.Boolean("Unread", compute="_compute_has_unread", store=True)
    failed_count = fields.Integer(
        "Failed Messages", compute="_compute_failed_count", store=True,
        help="Messages to the contact that failed, or whose outcome is unknown, and were not retried.")
    has_failed = fields.Boolean("Has Failed Messages", compute="_compute_has_failed", store=True)
    last_message_preview = fields.Char("Last Message", compute="_compute_last_message")
    last_message_direction = fields.Selection(
        [("inbound", "Received"), ("outbound", "Sent")], compute="_compute_last_message")
    last_message_state = fields.Char(compute="_compute_last_message")
    last_message_when = fields.Char(
        "When", compute="_compute_last_message",
        help="When the last message shown was exchanged, as a chat list says it: its time today, "
             "\"Yesterday\", the day of the week, or the date.")

    _sql_constraints = [
        ("account_wa_id_uniq", "unique(account_id, wa_id)",
         "There is already a conversation with this WhatsApp number on this account."),
        ("account_bsuid_uniq", "unique(account_id, bsuid)",
         "There is already a conversation with this WhatsApp user on this account."),
        ("wa_id_or_bsuid", "CHECK(wa_id IS NOT NULL OR bsuid IS NOT NULL)",
         "A conversation needs a WhatsApp number or a business-scoped user id."),
    ]

    @api.depends("lead_id", "profile_name", "wa_id", "bsuid")
    def _compute_display_name(self):
        for conversation in self:
            contact = conversation.lead_id.display_name or conversation.profile_name
            number = phone.format_international("+" + conversation.wa_id) if conversation.wa_id else conversation.bsuid
            conversation.display_name = f"{contact} ({number})" if contact else number

    @api.depends("last_inbound_at")
    def _compute_window(self):
        now = fields.Datetime.now()
        for conversation in self:
            # Clamped: a date Python cannot move 24 h forward (year 9999) must not break the inbox.
            last = conversation.last_inbound_at and min(conversation.last_inbound_at, datetime.max - SERVICE_WINDOW)
            expires = last and last + SERVICE_WINDOW
            conversation.window_expires_at = expires
            conversation.window_open = bool(expires and expires > now)

    def _search_window_open(self, operator, value):
        if operator not in ("=", "!="):
            raise NotImplementedError(_("Unsupported search on the reply window: %s", operator))
        is_open = (operator == "=") == bool(value)
        threshold = fields.Datetime.now() - SERVICE_WINDOW
        if is_open:
            return [("last_inbound_at", ">", threshold)]
        return ["|", ("last_inbound_at", "=", False), ("last_inbound_at", "<=", threshold)]

    @api.depends("message_ids.is_read")
    def _compute_unread_count(self):
        counts = dict(self.env["strato.whatsapp.message"]._read_group(
            [("conversation_id", "in", self.ids), ("direction", "=", "inbound"), ("is_read", "=", False)],
            ["conversation_id"], ["__count"]))
        for conversation in self:
            conversation.unread_count = counts.get(conversation, 0)

    def action_mark_read(self):
        """Mark the received messages of these conversations as read by the agent."""
        self.check_access("read")
        # Searched with the caller's rights: only what they can read is marked (and Meta told, if enabled).
        self.env["strato.whatsapp.message"].search([
            ("conversation_id", "in", self.ids), ("direction", "=", "inbound"), ("is_read", "=", False),
        ])._mark_read_by_agent()

    def action_open_lead(self):
        self.ensure_one()
        self.check_access("read")
        return {
            "type": "ir.actions.act_window",
            "res_model": "crm.lead",
            "res_id": self.lead_id.id,
            "views": [(False, "form")],
        }

    # ------------------------------------------------------------------
    # Inbound: one conversation per (account, WhatsApp user)
    # ------------------------------------------------------------------
    @api.model
    def _for_senders(self, account, senders):
        """Conversations for ``senders`` ({key: (wa_id, bsuid, profile_name)}), found or created.

        A user is known by wa_id, by BSUID (username users who hide their number), or both. When a
        message carries both and we hold separate conversations for each, they are joined so the
        history is not split. Returns {key: conversation}.
        """
        wa_ids = {wa_id for wa_id, _bsuid, _name in senders.values() if wa_id}
        bsuids = {bsuid for _wa_id, bsuid, _name in senders.values() if bsuid}
        existing = self.search([("account_id", "=", account.id), "|",
                                ("wa_id", "in", list(wa_ids)), ("bsuid", "in", list(bsuids))])
        by_wa_id = {conversation.wa_id: conversation for conversation in existing if conversation.wa_id}
        by_bsuid = {conversation.bsuid: conversation for conversation in existing if conversation.bsuid}
        # The usual new sender, a number without username, gets its conversation in one batched create;
        # the loop below then finds it like any other and handles the rarer joins.
        new_numbers = {}
        for wa_id, bsuid, profile_name in senders.values():
            if wa_id and not bsuid and wa_id not in by_wa_id:
                new_numbers.setdefault(wa_id, profile_name)
        if new_numbers:
            created = self.create([{"account_id": account.id, "wa_id": wa_id, "profile_name": profile_name}
                                   for wa_id, profile_name in new_numbers.items()])
            by_wa_id.update((conversation.wa_id, conversation) for conversation in created)
        result, merged_into = {}, {}
        for key, (wa_id, bsuid, profile_name) in senders.items():
            conversation = self._join(by_wa_id.get(wa_id), by_bsuid.get(bsuid), wa_id, bsuid, merged_into)
            if not conversation:
                conversation = self.create({
                    "account_id": account.id, "wa_id": wa_id, "bsuid": bsuid, "profile_name": profile_name})
            elif profile_name and conversation.profile_name != profile_name:
                conversation.profile_name = profile_name
            if wa_id:
                by_wa_id[wa_id] = conversation
            if bsuid:
                by_bsuid[bsuid] = conversation
            result[key] = conversation
        # Senders met earlier in this batch may point at a conversation merged away since.
        return {key: merged_into.get(conversation, conversation) for key, conversation in result.items()}

    def _join(self, by_number, by_bsuid, wa_id, bsuid, merged_into):
        """The single conversation for a sender known by number and/or BSUID, merging two into one."""
        if by_number and by_bsuid and by_number != by_bsuid:
            by_bsuid._merge_into(by_number)
            merged_into[by_bsuid] = by_number
        conversation = by_number or by_bsuid
        if conversation:
            missing = {}
            if wa_id and not conversation.wa_id:
                missing["wa_id"] = wa_id
            if bsuid and not conversation.bsuid:
                missing["bsuid"] = bsuid
            if missing:
                conversation.write(missing)
        return conversation

    def _merge_into(self, target):
        """Move this conversation's messages into ``target`` and delete it."""
        self.ensure_one()
        self.message_ids.write({"conversation_id": target.id})
        values = {"bsuid": target.bsuid or self.bsuid, "lead_id": target.lead_id.id or self.lead_id.id,
                  "partner_id": target.partner_id.id or self.partner_id.id,
                  "last_inbound_at": max(filter(None, [target.last_inbound_at, self.last_inbound_at]), default=False),
                  "last_message_at": max(filter(None, [target.last_message_at, self.last_message_at]), default=False)}
        self.unlink()  # first: its bsuid must be free before the target takes it
        target.write(values)

    def _whatsapp_new_lead_values(self, account_values):
        """Values of the lead created for a sender we have no open lead for; ``account_values`` are the
        ones every new lead of the account shares (``crm.lead._whatsapp_new_lead_account_values``)."""
        self.ensure_one()
        e164 = phone.e164_from_wa_id(self.wa_id) if self.wa_id else False
        number = e164 or (self.wa_id and "+" + self.wa_id)
        previous = self.lead_id
        profile_name = _inert_name(self.profile_name)
        shown_number = (number and phone.format_international(number)) or self.bsuid
        # In the language of the company's leads: the cron user's is nobody's.
        lang = self.account_id.company_id.partner_id.lang or self.env.lang
        env = self.with_context(lang=lang).env
        return {
            **account_values,
            "name": env._("WhatsApp: %(name)s (%(number)s)", name=profile_name, number=shown_number)
            if profile_name else env._("WhatsApp: %s", shown_number),
            "contact_name": profile_name or previous.contact_name,
            "partner_id": previous.partner_id.id or self.partner_id.id,
            "phone": number and phone.format_international(number),
        }

    # ------------------------------------------------------------------
    # Outbound: the conversation a lead is written to
    # ------------------------------------------------------------------
    @api.model
    def _for_leads(self, leads, account=None):
        """{lead: conversation} for the leads that can be written to, linked and created as needed
        (``_plan_for_leads`` then ``_link_planned``); leads that cannot be are left out."""
        links = self._plan_for_leads(leads, account)
        return self._link_planned({lead: link for lead, link in links.items() if not link.refusal})

    @api.model
    def _plan_for_leads(self, leads, account=None):
        """{lead: ConversationLink}: where a message to each lead would go, and why it cannot when it
        cannot. Nothing is written, so a message that is then not sent leaves no trace.

        Without ``account``, each lead is written from the number its latest conversation uses (the one
        the contact knows), else from its company's default account. A lead is reachable through its
        valid WhatsApp number, or through a conversation it already has (a contact known only by
        username). Leads without any account are left out.
        """
        by_account = {}
        for lead in leads:
            lead_account = account or self._latest_account(lead) or \
                self.env["strato.whatsapp.account"]._default_for(lead.company_id)
            if lead_account:
                by_account[lead_account] = by_account.get(lead_account, self.env["crm.lead"]) | lead
        result = {}
        for lead_account, account_leads in by_account.items():
            result.update(self._plan_on(account_leads, lead_account))
        return result

    @api.model
    def _latest_account(self, lead):
        latest = self.search([("lead_id", "=", lead.id), ("account_id.active", "=", True)],
                             order="last_message_at desc nulls last, id desc", limit=1)
        return latest.account_id

    @api.model
    def _plan_on(self, leads, account):
        leads.check_access("write")
        account.check_access("read")  # the caller's companies (record rule), whatever id they passed
        # The caller may write to ``leads`` (checked above); the number's conversation may be on a lead
        # they cannot read, and must be found to be refused (below), never shown or moved.
        # sudo: finds the number's conversation whatever its lead; refused below if not the caller's.
        existing = self.sudo().search([("account_id", "=", account.id), "|",
                                       ("wa_id", "in", [wa_id for wa_id in map(self._lead_wa_id, leads) if wa_id]),
                                       ("lead_id", "in", leads.ids)])
        by_wa_id = {conversation.wa_id: conversation for conversation in existing if conversation.wa_id}
        by_lead = {conversation.lead_id: conversation for conversation in existing}
        plan = {}
        for lead in leads:
            wa_id = self._lead_wa_id(lead)
            # sudo: an empty recordset, so that a found (sudo) and a missing conversation behave alike.
            conversation = (by_wa_id.get(wa_id) if wa_id else by_lead.get(lead)) or self.sudo()
            refusal = self._company_refusal(lead, account) or (conversation and self._owner_refusal(conversation, lead))
            plan[lead] = ConversationLink(account, wa_id or conversation.wa_id, conversation, refusal or None)
        return plan

    @api.model
    def _lead_wa_id(self, lead):
        return phone.wa_id_from_e164(lead.whatsapp_number) if lead.whatsapp_number else None

    @api.model
    def _company_refusal(self, lead, account):
        """A number of one company never writes to another company's lead: its customer's answers would
        land in that other company's chatter."""
        if lead.company_id and lead.company_id != account.company_id:
            return _("%(lead)s belongs to %(company)s, and the WhatsApp number %(account)s to another company.",
                     lead=lead.display_name, company=lead.company_id.name, account=account.display_name)
        return None

    @api.model
    def _owner_refusal(self, conversation, lead):
        """Why ``lead`` may not take the number's conversation from the lead it is on, or None.

        A conversation stays with its lead while that lead is open (the contact's answers go there): only
        someone who may write to that lead too (its salesperson, a manager) can move it. Once that lead
        is won, lost or deleted, the conversation follows the lead written from; the messages keep their
        own lead, so the earlier history is not shown to the new lead's salesperson.
        """
        owner = conversation.lead_id
        if not owner or owner == lead or not owner._whatsapp_is_open():
            return None
        if owner.with_env(self.env).has_access("write"):
            return None
        return _("%(number)s is already in a WhatsApp conversation on the lead “%(lead)s” of %(user)s. Write from "
                 "that lead, or ask %(user)s or a sales manager to merge the two leads.",
                 number=phone.format_international("+" + conversation.wa_id) if conversation.wa_id else lead.display_name,
                 lead=owner.name, user=owner.user_id.name or _("another salesperson"))

    @api.model
    def _link_planned(self, links):
        """Make the planned links real for ``links`` ({lead: ConversationLink} without refusal): create the
        missing conversations, move those whose lead gave them up. Returns {lead: conversation}."""
        result, to_create = {}, {}
        for lead, link in links.items():
            conversation = link.conversation
            if conversation:
                if conversation.lead_id != lead:
                    # sudo: the move was allowed by _owner_refusal for a lead the caller may write to.
                    conversation.sudo().write({"lead_id": lead.id, "partner_id": lead.partner_id.id})
                result[lead] = conversation
            elif link.wa_id:
                # Selected leads sharing a number share one conversation.
                to_create.setdefault((link.account, link.wa_id), lead)
        # sudo: users read conversations but create them only through this flow, for leads they may write to.
        created = self.sudo().create([
            {"account_id": account.id, "wa_id": wa_id, "lead_id": lead.id, "partner_id": lead.partner_id.id,
             "profile_name": lead.contact_name} for (account, wa_id), lead in to_create.items()])
        by_key = {(conversation.account_id, conversation.wa_id): conversation for conversation in created}
        for lead, link in links.items():
            if lead not in result and (link.account, link.wa_id) in by_key:
                result[lead] = by_key[(link.account, link.wa_id)]
        return {lead: conversation.with_env(self.env) for lead, conversation in result.items()}

    def _opted_out(self):
        """Whether this conversation's number (the one messages actually go to) is on the phone blacklist:
        the lead's phone may have been changed or cleared since the contact asked us to stop."""
        self.ensure_one()
        return self._wa_id_opted_out(self.wa_id)

    @api.model
    def _wa_id_opted_out(self, wa_id):
        number = phone.e164_from_wa_id(wa_id) if wa_id else None
        # The blacklist is readable by system administrators only.
        # sudo: only a yes/no for a number the caller writes to leaves this method.
        return bool(number) and bool(self.env["phone.blacklist"].sudo().search_count([("number", "=", number)], limit=1))


    # ------------------------------------------------------------------
    # The inbox
    # ------------------------------------------------------------------
    @api.depends("unread_count")
    def _compute_has_unread(self):
        for conversation in self:
            conversation.has_unread = conversation.unread_count > 0

    @api.depends("message_ids.state")
    def _compute_failed_count(self):
        counts = dict(self.env["strato.whatsapp.message"]._read_group(
            [("conversation_id", "in", self.ids), ("direction", "=", "outbound"), ("state", "in", const.FAILED_STATES)],
            ["conversation_id"], ["__count"]))
        for conversation in self:
            conversation.failed_count = counts.get(conversation, 0)

    @api.depends("failed_count")
    def _compute_has_failed(self):
        for conversation in self:
            conversation.has_failed = conversation.failed_count > 0

    def _compute_last_message(self):
        latest = self._latest_messages()
        for conversation in self:
            message = latest.get(conversation.id)
            conversation.last_message_direction = message.direction if message else False
            conversation.last_message_state = message.state if message else False
            text = " ".join((message._chatter_text() or "").split()) if message else ""
            conversation.last_message_preview = (
                text if len(text) <= PREVIEW_LENGTH else text[:PREVIEW_LENGTH - 1] + "…")
            conversation.last_message_when = self._chat_list_when(message.message_at) if message else False

    @api.model
    def _chat_list_when(self, moment):
        """"15:40" today, "Yesterday", "Monday" within the week, else the date, in the user's time zone and
        language."""
        tz = pytz.timezone(self.env.context.get("tz") or self.env.user.tz or "UTC")
        try:
            local = pytz.utc.localize(moment).astimezone(tz)
        except (OverflowError, ValueError):  # a date at the end of time, from a broken clock
            return format_date(self.env, moment.date())
        days = (datetime.now(tz).date() - local.date()).days
        locale = babel_locale_parse(self.env.lang or "en_US")
        if days <= 0:
            return babel.dates.format_time(local, format="short", locale=locale)
        if days == 1:
            return _("Yesterday")
        if days < 7:
            return babel.dates.format_date(local.date(), format="EEEE", locale=locale).capitalize()
        return format_date(self.env, local.date())

    def _latest_messages(self):
        """{conversation id: its latest message other than a reaction}, in one query."""
        ids = [conversation_id for conversation_id in self.ids if conversation_id]
        if not ids:
            return {}
        self.env["strato.whatsapp.message"].flush_model(["conversation_id", "message_at", "message_type"])
        self.env.cr.execute("""
            SELECT DISTINCT ON (conversation_id) conversation_id, id
              FROM strato_whatsapp_message
             WHERE conversation_id IN %s AND message_type != 'reaction'
             ORDER BY conversation_id, message_at DESC, id DESC
        """, [tuple(ids)])
        rows = self.env.cr.fetchall()
        messages = self.env["strato.whatsapp.message"].browse(message_id for _conversation, message_id in rows)
        return {conversation_id: message for (conversation_id, _id), message in zip(rows, messages)}

    def action_open_chat(self):
        """The lead's form, where the chat lives (the conversation's own form when it has no lead)."""
        self.ensure_one()
        self.check_access("read")
        if self.lead_id:
            return self.action_open_lead()
        return {"type": "ir.actions.act_window", "res_model": self._name, "res_id": self.id,
                "views": [(False, "form")]}


class ConversationLink(NamedTuple):
    """Where a message to a lead goes: the account, the number, the conversation found (empty: created
    when the message is queued) and, when it cannot go, why."""

    account: models.BaseModel
    wa_id: str | None
    conversation: models.BaseModel
    refusal: str | None

    @property
    def window_open(self):
        return bool(self.conversation) and self.conversation.window_open
