from odoo import _, fields, models
from odoo.exceptions import UserError

from .. import const
from ..tools import phone

CHAT_PAGE_SIZE = 60


class CrmLeadChat(models.Model):
    """The RPC methods behind the WhatsApp chat panel of the lead form.

    Every method runs with the user's rights: a salesperson chats on the leads they can see.
    """

    _inherit = "crm.lead"

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
