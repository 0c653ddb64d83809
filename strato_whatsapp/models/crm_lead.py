from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from .. import const
from ..tools import phone

CHAT_PAGE_SIZE = 60
NUMBER_STATES = [
    ("valid", "Valid"),
    ("invalid", "Invalid"),
    ("missing", "Missing"),
]


class CrmLead(models.Model):
    """WhatsApp on the lead: its number, opt-out, conversations, and the RPC methods behind the chat panel
    of the lead form (``whatsapp_chat_*``), which run with the user's rights: a salesperson chats on the
    leads they can see."""

    _inherit = "crm.lead"

    whatsapp_conversation_ids = fields.One2many(
        "strato.whatsapp.conversation", "lead_id", string="WhatsApp Conversations",
        groups="strato_whatsapp.group_whatsapp_user")
    whatsapp_message_ids = fields.One2many(
        "strato.whatsapp.message", "lead_id", string="WhatsApp Messages",
        groups="strato_whatsapp.group_whatsapp_user")
    whatsapp_message_count = fields.Integer(
        "WhatsApp Message Count", compute="_compute_whatsapp_message_count",
        groups="strato_whatsapp.group_whatsapp_user")
    whatsapp_number = fields.Char(
        "WhatsApp Number", compute="_compute_whatsapp_number", store=True, index="btree_not_null",
        help="The mobile (or else the phone) in international E.164 form, read with the lead's country "
             "or the company's.")
    whatsapp_number_state = fields.Selection(
        NUMBER_STATES, "WhatsApp Number Status", compute="_compute_whatsapp_number", store=True)
    whatsapp_mobile_key = fields.Char(
        compute="_compute_whatsapp_number", store=True, index="btree_not_null",
        help="Technical: the mobile as WhatsApp ids are matched against it.")
    whatsapp_phone_key = fields.Char(
        compute="_compute_whatsapp_number", store=True, index="btree_not_null",
        help="Technical: the phone as WhatsApp ids are matched against it.")
    whatsapp_opt_out = fields.Boolean(
        "WhatsApp Opt-out", compute="_compute_whatsapp_opt_out", inverse="_inverse_whatsapp_opt_out",
        search="_search_whatsapp_opt_out", groups="strato_whatsapp.group_whatsapp_user",
        help="The contact asked not to receive marketing messages. Kept in the phone blacklist, which SMS "
             "honours too. Any salesperson can record an opt-out; only a WhatsApp administrator can lift one.")

    @api.depends("mobile", "phone", "country_id", "company_id")
    def _compute_whatsapp_number(self):
        for lead in self:
            country_code = lead._whatsapp_country_code()
            mobile = phone.to_e164(lead.mobile, country_code)
            landline = phone.to_e164(lead.phone, country_code)
            lead.whatsapp_number = mobile or landline or False
            lead.whatsapp_mobile_key = phone.match_key(mobile) or False
            lead.whatsapp_phone_key = phone.match_key(landline) or False
            if mobile or landline:
                lead.whatsapp_number_state = "valid"
            else:
                lead.whatsapp_number_state = "invalid" if (lead.mobile or lead.phone) else "missing"

    def _whatsapp_country_code(self):
        country = self.country_id or self.company_id.country_id or self.env.company.country_id
        return country.code or None

    def _compute_whatsapp_message_count(self):
        counts = dict(self.env["strato.whatsapp.message"]._read_group(
            [("lead_id", "in", self.ids)], ["lead_id"], ["__count"]))
        for lead in self:
            lead.whatsapp_message_count = counts.get(lead, 0)

    @api.depends("whatsapp_number")
    def _compute_whatsapp_opt_out(self):
        numbers = [number for number in self.mapped("whatsapp_number") if number]
        if not (self.env.su or self.env.user.has_group("strato_whatsapp.group_whatsapp_user")):
            # The field is for WhatsApp users (an onchange with any number would otherwise tell anyone
            # whether it is blacklisted).
            raise AccessError(_("Only WhatsApp users can see whether a contact opted out."))
        # sudo: the caller is a WhatsApp user (checked above), who needs to know whether a lead may get marketing; only a yes/no per number leaves, not the blacklist's records.
        blacklisted = set(self.env["phone.blacklist"].sudo().search([("number", "in", numbers)]).mapped("number"))
        for lead in self:
            lead.whatsapp_opt_out = bool(lead.whatsapp_number) and lead.whatsapp_number in blacklisted

    def _inverse_whatsapp_opt_out(self):
        # The blacklist is shared with SMS and only writable by system administrators. Recording a
        # contact's wish to stop is any salesperson's duty; lifting it re-subscribes the number to every
        # channel, so only a WhatsApp administrator (or a system administrator) may.
        self.check_access("write")
        lifting = self.filtered(lambda lead: not lead.whatsapp_opt_out and lead.whatsapp_number)
        if lifting and not (self.env.is_system() or self.env.user.has_group("strato_whatsapp.group_whatsapp_admin")):
            raise AccessError(_("Only a WhatsApp administrator can lift an opt-out: the contact asked not to be "
                                "written to."))
        # sudo: the caller may write to these leads, and may lift opt-outs (both checked above).
        blacklist = self.env["phone.blacklist"].sudo()
        for lead in self:
            if lead.whatsapp_opt_out and not lead.whatsapp_number:
                raise UserError(_("%s has no valid WhatsApp number to opt out.", lead.display_name))
            if not lead.whatsapp_number:
                continue
            who = self.env.user.name
            if lead.whatsapp_opt_out:
                blacklist._add([lead.whatsapp_number], message=_(
                    "Opted out of WhatsApp on lead %(lead)s by %(user)s", lead=lead.display_name, user=who))
                lead._message_log(body=_("WhatsApp opt-out recorded by %s.", who))
            else:
                blacklist._remove([lead.whatsapp_number], message=_(
                    "Opted back in to WhatsApp on lead %(lead)s by %(user)s", lead=lead.display_name, user=who))
                lead._message_log(body=_("WhatsApp opt-out lifted by %s.", who))
        # Open chats redraw their reply box (marketing templates allowed or not).
        self.env["strato.whatsapp.message"]._notify_chat_leads(self)

    def _search_whatsapp_opt_out(self, operator, value):
        if operator not in ("=", "!="):
            raise UserError(_("Unsupported search on WhatsApp opt-out: %s", operator))
        # sudo: a subquery for the search only: what comes back is the caller's own leads (their rules apply).
        blacklisted = self.env["phone.blacklist"].sudo()._search([])
        numbers_query = blacklisted.subselect("number")
        if (operator == "=") == bool(value):
            return [("whatsapp_number", "in", numbers_query)]
        return ["|", ("whatsapp_number", "=", False), ("whatsapp_number", "not in", numbers_query)]

    def action_open_whatsapp_messages(self):
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id("strato_whatsapp.strato_whatsapp_message_action")
        action["domain"] = [("lead_id", "=", self.id)]
        action["context"] = {"default_lead_id": self.id, "search_default_group_by_conversation": 0}
        return action

    def _merge_dependences(self, opportunities):
        """A merge carries the WhatsApp conversations and messages to the surviving lead, like its chatter
        (otherwise they would lose their lead, and with it whom they are shown to)."""
        result = super()._merge_dependences(opportunities)
        # sudo: crm's merge checked the caller's rights on every merged lead; these records follow them.
        self.env["strato.whatsapp.conversation"].sudo().search([("lead_id", "in", opportunities.ids)]).write(
            {"lead_id": self.id})
        # sudo: as the conversations above: crm's merge checked the caller's rights on the merged leads.
        self.env["strato.whatsapp.message"].sudo().search([("lead_id", "in", opportunities.ids)]).write(
            {"lead_id": self.id})
        return result

    # ------------------------------------------------------------------
    # Inbound: which lead a WhatsApp sender belongs to
    # ------------------------------------------------------------------
    def _whatsapp_is_open(self):
        """Still being worked on: not lost (archived) and not won."""
        self.ensure_one()
        return self.active and not self.stage_id.is_won

    @api.model
    def _whatsapp_assign_leads(self, account, conversations):
        """Give each conversation without an open lead one, found by number or created.

        Rule: a conversation keeps its lead while the lead is open. Otherwise the most recent open lead
        whose mobile or phone is the sender's number takes it; if there is none a new lead is created
        (carrying over the previous lead's contact), so a customer who comes back after a won or lost
        deal becomes a new opportunity and the old lead keeps its history. Returns the created leads.
        """
        orphans = conversations.filtered(lambda conversation: not (
            conversation.lead_id and conversation.lead_id._whatsapp_is_open()))
        if not orphans:
            return self.browse()
        found = self._whatsapp_open_leads_by_key(account.company_id, orphans.mapped("wa_id"))
        to_create = []
        for conversation in orphans:
            lead = found.get(phone.match_key(conversation.wa_id))
            if lead:
                conversation.write({"lead_id": lead.id, "partner_id": lead.partner_id.id or conversation.partner_id.id})
            else:
                to_create.append(conversation)
        if not to_create:
            return self.browse()
        account_values = self._whatsapp_new_lead_account_values(account)
        # Odoo's "lead created" notice is a full message_post per lead; it is posted with the lead's first
        # message in the chatter pass instead (see strato.whatsapp.message._post_inbound_to_chatter).
        # The stage is crm's to compute (the team's first). A context default would save its lookup per
        # lead, but would reach whatever else is created meanwhile, automation rules included.
        leads = self.with_context(mail_create_nolog=True).create(
            [conversation._whatsapp_new_lead_values(account_values) for conversation in to_create])
        for conversation, lead in zip(to_create, leads):
            conversation.lead_id = lead
        if leads.filtered(lambda lead: not lead.user_id) and self._whatsapp_auto_assignment_on():
            # sudo: crm's own cron, woken for leads the inbound cron just created; it assigns by its rules.
            self.env.ref("crm.ir_cron_crm_lead_assign").sudo()._trigger()
        return leads.with_env(self.env)

    def _whatsapp_tell_about_new_contacts(self, account):
        """Someone is always told about a new contact: its salesperson (the account's, or CRM's rule-based
        assignment's, woken when the lead was created), else the account's users to tell, else the team's
        leader, else the number's WhatsApp administrators; each gets an activity on the lead. Run in the
        chatter pass with the lead's creation notice: the first pass stays the fast lane (50 ms per new
        contact in the webhook benchmark when done there)."""
        in_company = account.notify_user_ids.filtered(lambda user: account.company_id in user.company_ids)
        fallback = in_company or account.team_id.user_id or self.env.ref(
            "strato_whatsapp.group_whatsapp_admin").users.filtered(
                lambda user: not user.share and account.company_id in user.company_ids
                and user != self.env.ref("base.user_root"))
        activities = []
        for lead in self:
            for user in (lead.user_id or fallback[:5]):
                lang = user.lang or lead._whatsapp_lang()
                summary = self.with_context(lang=lang).env._("New WhatsApp contact: answer them")
                text = self.with_context(lang=lang).env._(
                    "%s wrote on WhatsApp for the first time. Answer in the lead's WhatsApp chat.",
                    lead.contact_name or lead.phone or lead.name) if lead.user_id else \
                    self.with_context(lang=lang).env._(
                        "%s wrote on WhatsApp for the first time and the lead has no salesperson yet: assign it, "
                        "or answer in the lead's WhatsApp chat.", lead.contact_name or lead.phone or lead.name)
                # The contact chose their name: escaped, never markup (a link or an image in an activity).
                note = Markup("<p>%s</p>") % text
                activities.append({
                    "res_model_id": self.env["ir.model"]._get_id("crm.lead"), "res_id": lead.id,
                    "activity_type_id": self.env.ref("mail.mail_activity_data_todo").id,
                    "summary": summary, "note": note, "user_id": user.id,
                    "date_deadline": fields.Date.context_today(self),
                })
        if activities:
            # The activity is the notice (the user's activity menu, the lead's chatter): no e-mail per new
            # contact on top of it, which cost 50 ms per new number in the webhook benchmark.
            # sudo: the inbound cron tells users about leads it just created; activities are mail's records.
            self.env["mail.activity"].sudo().with_context(mail_activity_quick_update=True).create(activities)

    @api.model
    def _whatsapp_auto_assignment_on(self):
        # sudo: reads whether CRM's rule-based assignment is on (a setting), nothing else.
        if not self.env["ir.config_parameter"].sudo().get_param("crm.lead.auto.assignment"):
            return False
        cron = self.env.ref("crm.ir_cron_crm_lead_assign", raise_if_not_found=False)
        # sudo: same setting: whether crm's assignment cron is active.
        return bool(cron and cron.sudo().active)

    def _whatsapp_lang(self):
        """The language of what crons write for this lead (chatter posts, notes, message texts): there is no
        user behind them, so it is the salesperson's, else the company's, rather than the cron user's.
        None for no lead."""
        if not self:
            return None
        self.ensure_one()
        return self.user_id.lang or self.company_id.partner_id.lang or self.env.company.partner_id.lang or None

    def _whatsapp_log_creation(self):
        """The notice Odoo posts when a lead is created (its creation subtype tells the team's followers),
        for a lead created by an inbound message without it."""
        self.ensure_one()
        self._whatsapp_tell_about_new_contacts(self.whatsapp_conversation_ids[:1].account_id)
        lang = self._whatsapp_lang()
        lead = self.with_context(lang=lang) if lang and lang != self.env.lang else self
        subtype = lead._creation_subtype()
        if not subtype:
            lead._message_log(body=lead._creation_message())
            return
        # sudo: run by the inbound cron for a lead it just created; the post is crm's own creation notice.
        lead.sudo().message_post(
            subtype_id=subtype.id, author_id=self.env.user.partner_id.id,
            body=Markup('<div summary="o_mail_notification"><p>%s</p></div>') % lead._creation_message())

    @api.model
    def _whatsapp_open_leads_by_key(self, company, wa_ids):
        """{match key: most recent open lead} for the given WhatsApp ids, in one indexed query."""
        keys = list({phone.match_key(wa_id) for wa_id in wa_ids if wa_id})
        if not keys:
            return {}
        leads = self.with_context(active_test=True).search([
            "|", ("whatsapp_mobile_key", "in", keys), ("whatsapp_phone_key", "in", keys),
            ("company_id", "in", [company.id, False]),
        ], order="id desc")
        found = {}
        for lead in leads.filtered(lambda lead: not lead.stage_id.is_won):
            for key in (lead.whatsapp_mobile_key, lead.whatsapp_phone_key):
                if key in keys:
                    found.setdefault(key, lead)
        return found

    @api.model
    def _whatsapp_new_lead_account_values(self, account):
        """What every lead created for a sender on ``account`` shares: source, sales team, salesperson,
        company. Looked up once for a burst of new senders rather than once per lead."""
        team = account.team_id or self.env["crm.team"]._get_default_team_id(
            domain=[("company_id", "in", [account.company_id.id, False])])
        return {
            "type": self._whatsapp_default_type(),
            "source_id": self.env.ref("strato_whatsapp.utm_source_whatsapp").id,
            "team_id": team.id,
            "user_id": account.user_id.id,
            "company_id": account.company_id.id,
        }

    @api.model
    def _whatsapp_default_type(self):
        # sudo: reads a setting (whether leads are in use), nothing else.
        uses_leads = self.env.ref("crm.group_use_lead") in self.env.ref("base.group_user").sudo().implied_ids
        return "lead" if uses_leads else "opportunity"

    def _whatsapp_set_opt_out(self, opted_out, number, reason):
        """Record an opt-out (or opt-in) asked for on WhatsApp, for ``number`` and the leads' numbers."""
        numbers = {number, *self.mapped("whatsapp_number")} - {False, None}
        # sudo: called by the inbound cron (the contact's own STOP/START) and the send queue (Meta's opt-out answer), never from a user's request.
        blacklist = self.env["phone.blacklist"].sudo()
        if opted_out:
            blacklist._add(list(numbers), message=reason)
        else:
            blacklist._remove(list(numbers), message=reason)
        for lead in self:
            lead._message_log(body=reason)
        self.invalidate_recordset(["whatsapp_opt_out"])
        self.env["strato.whatsapp.message"]._notify_chat_leads(self)

    # ------------------------------------------------------------------
    # The chat panel
    # ------------------------------------------------------------------
    def whatsapp_chat_load(self, limit=CHAT_PAGE_SIZE):
        """The latest messages of this lead and what its reply box allows."""
        self.ensure_one()
        self.check_access("read")
        page = self._whatsapp_chat_page([], limit)
        page["composer"] = self._whatsapp_chat_composer()
        page["unread"] = self._whatsapp_chat_unread_count()
        return page

    def whatsapp_chat_older(self, before_id, limit=CHAT_PAGE_SIZE):
        """The page of messages before message ``before_id`` (scrolling back in the history)."""
        self.ensure_one()
        self.check_access("read")
        # Looked up among this lead's messages that the user can read: a message that does not exist and
        # one that is not theirs give the same empty page.
        before = self.env["strato.whatsapp.message"].search(self._whatsapp_chat_domain() + [("id", "=", before_id)])
        if not before:
            return {"messages": [], "has_more": False}
        domain = ["|", ("message_at", "<", before.message_at),
                  "&", ("message_at", "=", before.message_at), ("id", "<", before.id)]
        return self._whatsapp_chat_page(domain, limit)

    def whatsapp_chat_fetch(self, message_ids):
        """These messages as they are now (after a live notification), with the reply box."""
        self.ensure_one()
        self.check_access("read")
        messages = self.env["strato.whatsapp.message"].search(self._whatsapp_chat_domain() + [("id", "in", message_ids)])
        return {"messages": messages._chat_values(), "composer": self._whatsapp_chat_composer(),
                "unread": self._whatsapp_chat_unread_count()}

    def whatsapp_chat_send(self, body="", template_id=False, attachment_ids=()):
        """Queue what the agent wrote: free text, an approved template or files (one message each).

        A message WhatsApp would refuse (window closed, no number...) raises a ``UserError`` saying why.
        """
        self.ensure_one()
        self.check_access("write")
        body = (body or "").strip()
        Message = self.env["strato.whatsapp.message"]
        if template_id:
            template = self.env["strato.whatsapp.template"].browse(template_id).exists()
            if not template:
                raise UserError(_("This template no longer exists."))
            messages, _skipped = Message._enqueue_for_leads(
                self, template=template, account=template.account_id, raise_on_skip=True)
        else:
            messages = self._whatsapp_chat_send_free(body, self._whatsapp_chat_attachments(attachment_ids))
        return {"messages": messages._chat_values(), "composer": self._whatsapp_chat_composer()}

    def whatsapp_chat_mark_read(self):
        """The agent opened the chat: its received messages are read (and Meta told, if enabled)."""
        self.ensure_one()
        self.check_access("read")
        unread = self.env["strato.whatsapp.message"].search(self._whatsapp_chat_unread_domain())
        return len(unread._mark_read_by_agent())

    # ------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------
    def _whatsapp_chat_domain(self):
        # Reactions show on the message they react to, not as bubbles of their own.
        return [("lead_id", "=", self.id), ("message_type", "!=", "reaction")]

    def _whatsapp_chat_unread_domain(self):
        # Reactions included: they count as unread in the inbox until the chat is opened.
        return [("lead_id", "=", self.id), ("direction", "=", "inbound"), ("is_read", "=", False)]

    def _whatsapp_chat_unread_count(self):
        return self.env["strato.whatsapp.message"].search_count(self._whatsapp_chat_unread_domain())

    def _whatsapp_chat_page(self, domain, limit):
        messages = self.env["strato.whatsapp.message"].search(
            self._whatsapp_chat_domain() + domain, order="message_at desc, id desc", limit=limit + 1)
        return {"messages": messages[:limit]._chat_values(), "has_more": len(messages) > limit}

    def _whatsapp_chat_attachments(self, attachment_ids):
        attachments = self.env["ir.attachment"].browse(attachment_ids).exists()
        foreign = attachments.filtered(lambda attachment: (attachment.res_model, attachment.res_id) != (self._name, self.id))
        if foreign:
            raise UserError(_("Attach the files to this lead before sending them."))
        return attachments

    def _whatsapp_chat_send_free(self, body, attachments):
        Message = self.env["strato.whatsapp.message"]
        if not (body or attachments):
            raise UserError(_("Write a message or attach a file."))
        if not attachments:
            return Message._enqueue_for_leads(self, body=body, raise_on_skip=True)[0]
        messages, caption = Message.browse(), body
        if body and Message._media_type_for(attachments[0].mimetype) not in const.MEDIA_CAPTION_TYPES:
            # Audio and stickers take no caption: the text goes first, on its own.
            messages, caption = Message._enqueue_for_leads(self, body=body, raise_on_skip=True)[0], None
        for index, attachment in enumerate(attachments):
            messages |= Message._enqueue_for_leads(
                self, body=caption if index == 0 else None, attachment=attachment, raise_on_skip=True)[0]
        return messages

    def _whatsapp_chat_conversation(self):
        """The conversation a message written now goes to (None yet when the lead was never written to)."""
        Conversation = self.env["strato.whatsapp.conversation"]
        account = Conversation._latest_account(self) or self.env["strato.whatsapp.account"]._default_for(self.company_id)
        if not account:
            return Conversation, account
        wa_id = self.whatsapp_number and phone.wa_id_from_e164(self.whatsapp_number)
        domain = [("wa_id", "=", wa_id)] if wa_id else [("lead_id", "=", self.id)]
        return Conversation.search([("account_id", "=", account.id)] + domain, limit=1), account

    def _whatsapp_chat_composer(self):
        """What the reply box offers, and why free text is not allowed when it is not."""
        conversation, account = self._whatsapp_chat_conversation()
        refusal = account and self.has_access("write") and \
            self.env["strato.whatsapp.conversation"]._plan_for_leads(self, account)[self].refusal
        if refusal:
            return {"account": account.display_name, "reachable": False, "window_open": False,
                    "window_expires_at": False, "opted_out": False, "notice": refusal, "templates": []}
        reachable = bool(conversation) or self.whatsapp_number_state == "valid"
        window_open = bool(conversation.window_open)
        return {
            "account": account.display_name or "",
            "reachable": bool(account) and reachable,
            "window_open": window_open,
            "window_expires_at": fields.Datetime.to_string(conversation.window_expires_at) if window_open else False,
            "opted_out": self.whatsapp_opt_out,
            "notice": self._whatsapp_chat_notice(account, reachable, window_open),
            "templates": self._whatsapp_chat_templates(account) if account and reachable else [],
        }

    def _whatsapp_chat_notice(self, account, reachable, window_open):
        if not account:
            return _("No WhatsApp number is configured for this company yet.")
        if not reachable:
            return _("This lead has no valid WhatsApp number: add a mobile number (with its country code if it "
                     "is from abroad).")
        if not window_open:
            return _("The contact has not written in the last 24 hours. WhatsApp only lets you write first with an "
                     "approved template; once they answer you can write freely again.")
        return ""

    def _whatsapp_chat_templates(self, account):
        domain = [("account_id", "=", account.id), ("status", "=", "approved")]
        if self.whatsapp_opt_out:
            domain.append(("category", "!=", "MARKETING"))
        templates = self.env["strato.whatsapp.template"].search(domain, order="name, language")
        return [{"id": template.id, "name": template.display_name, "category": template.category,
                 "preview": template._render_text(self)} for template in templates]
