import base64
import json
from datetime import datetime, timedelta

from freezegun import freeze_time

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from .common import WhatsappCase, WithGraphSimulator

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


class ChatCase(WithGraphSimulator, WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lead = cls._lead(name="Ático en Chamberí", contact_name="Lucía Fernández", mobile="+34 600 00 03 01",
                             user_id=cls.salesman.id)
        cls.conversation = cls._conversation(cls.lead, "34600000301", last_inbound_at=fields.Datetime.now())
        cls.template = cls._template("bienvenida_inmobiliaria", "MARKETING", "Hola {{1}}, gracias por escribirnos.")
        cls.utility = cls._template("recordatorio_visita", "UTILITY", "Le recordamos su visita de mañana.")
        cls._template("borrador", "UTILITY", "Aún no aprobada", status="pending")

    @classmethod
    def _template(cls, name, category, body, status="approved"):
        return cls.env["strato.whatsapp.template"].create({
            "name": name, "account_id": cls.account.id, "language": "es", "category": category,
            "status": status, "body": body})

    def setUp(self):
        super().setUp()
        self.chat = self.lead.with_user(self.salesman)

    def _inbound(self, body, minutes_ago=0, **vals):
        return self._message(self.conversation, body, wamid=f"wamid.in.{body[:12]}.{minutes_ago}",
                             message_at=fields.Datetime.now() - timedelta(minutes=minutes_ago), **vals)

    def _outbound(self, body, minutes_ago=0, **vals):
        return self._message(self.conversation, body, direction="outbound",
                             message_at=fields.Datetime.now() - timedelta(minutes=minutes_ago), **vals)


@tagged("post_install", "-at_install")
class TestInboxTimes(ChatCase):
    """The inbox card says when, as a chat list does, in the agent's time zone and language."""

    def test_today_yesterday_weekday_then_date(self):
        self.env["res.lang"]._activate_lang("es_ES")
        Conversation = self.env["strato.whatsapp.conversation"].with_context(tz="Europe/Madrid", lang="es_ES")
        now = datetime(2026, 12, 4, 14, 40)  # a Friday, 15:40 in Madrid
        with freeze_time(now):
            self.assertEqual(Conversation._chat_list_when(now), "15:40")
            self.assertEqual(Conversation._chat_list_when(now - timedelta(days=1)), "Ayer")
            self.assertEqual(Conversation._chat_list_when(now - timedelta(days=3)), "Martes")
            self.assertEqual(Conversation._chat_list_when(now - timedelta(days=10)), "24/11/2026")
            self.assertTrue(Conversation._chat_list_when(datetime.max), "the end of time does not break it")

    def test_the_card_time_is_the_previewed_messages(self):
        self._inbound("¿Tiene garaje?", minutes_ago=30)
        reaction = self._message(self.conversation, "👍", message_type="reaction", message_at=fields.Datetime.now())
        self.conversation.invalidate_recordset()
        self.assertEqual(self.conversation.last_message_preview, "¿Tiene garaje?")
        shown = self.conversation._chat_list_when(self.conversation.message_ids.filtered(
            lambda message: message != reaction).message_at)
        self.assertEqual(self.conversation.last_message_when, shown)


@tagged("post_install", "-at_install")
class TestChatLoad(ChatCase):

    def test_messages_come_oldest_first_with_their_status_and_reaction(self):
        question = self._inbound("¿Tiene terraza?", minutes_ago=10)
        answer = self._outbound("Sí, de 20 m²", minutes_ago=5, state="failed", error_code=131026,
                                error_message="Message undeliverable", wamid="wamid.out.1")
        self._message(self.conversation, "👍", message_type="reaction", reply_to_wamid="wamid.out.1",
                      wamid="wamid.in.reaction", message_at=fields.Datetime.now())
        answer.reaction_emoji = "👍"
        page = self.chat.whatsapp_chat_load()
        self.assertEqual([message["id"] for message in page["messages"]], [question.id, answer.id],
                         "the reaction shows on its message, not as a bubble")
        self.assertFalse(page["has_more"])
        self.assertEqual(page["unread"], 2, "the question and the reaction are unread")
        shown = page["messages"][1]
        self.assertEqual(shown["direction"], "outbound")
        self.assertEqual(shown["state"], "failed")
        self.assertEqual(shown["reaction"], "👍")
        self.assertEqual(shown["error"], "Message undeliverable", "the reason, without Meta's code")
        self.assertEqual((shown["can_retry"], shown["can_cancel"], shown["is_failed"]), (True, False, True))

    def test_media_location_and_template_messages_carry_what_the_bubble_needs(self):
        attachment = self.env["ir.attachment"].create({
            "name": "salon.png", "raw": PNG, "mimetype": "image/png", "res_model": "crm.lead", "res_id": self.lead.id})
        self._inbound("El salón", message_type="image", attachment_ids=[(4, attachment.id)], media_state="done",
                      minutes_ago=2)
        self._inbound("Calle Mayor 1, Madrid\nhttps://www.google.com/maps/search/?api=1&query=40.4,-3.7",
                      message_type="location", latitude=40.4168, longitude=-3.7038, minutes_ago=1)
        self._outbound("Hola Lucía, gracias por escribirnos.", message_type="template", template_id=self.template.id)
        image, location, template = self.chat.whatsapp_chat_load()["messages"][-3:]
        self.assertEqual(image["attachments"], [{"id": attachment.id, "name": "salon.png", "mimetype": "image/png",
                                                 "url": f"/web/content/{attachment.id}"}])
        self.assertEqual(location["body"], "Calle Mayor 1, Madrid", "the map link is a button, not text")
        self.assertIn("40.4168", location["map_url"])
        self.assertEqual(template["template"], "bienvenida_inmobiliaria")
        self.assertEqual(template["body"], "Hola Lucía, gracias por escribirnos.")

    def test_a_reply_quotes_the_message_it_answers(self):
        self._outbound("El piso tiene dos baños", minutes_ago=3, wamid="wamid.out.quoted", state="read")
        self._inbound("¿Y garaje?", reply_to_wamid="wamid.out.quoted")
        self.assertEqual(self.chat.whatsapp_chat_load()["messages"][-1]["reply_to"], "El piso tiene dos baños")

    def test_long_histories_load_by_pages(self):
        messages = [self._inbound(f"Mensaje {index}", minutes_ago=100 - index) for index in range(5)]
        page = self.chat.whatsapp_chat_load(limit=2)
        self.assertEqual([message["id"] for message in page["messages"]], [messages[3].id, messages[4].id])
        self.assertTrue(page["has_more"])
        older = self.chat.whatsapp_chat_older(messages[3].id, limit=2)
        self.assertEqual([message["id"] for message in older["messages"]], [messages[1].id, messages[2].id])
        self.assertTrue(older["has_more"])
        self.assertFalse(self.chat.whatsapp_chat_older(messages[1].id, limit=2)["has_more"])

    def test_fetch_returns_only_this_leads_messages(self):
        mine = self._inbound("mío")
        other_lead = self._lead(name="Otro", mobile="+34 600 00 03 02", user_id=self.salesman.id)
        other = self._message(self._conversation(other_lead, "34600000302"), "de otro")
        fetched = self.chat.whatsapp_chat_fetch([mine.id, other.id])
        self.assertEqual([message["id"] for message in fetched["messages"]], [mine.id])
        self.assertTrue(fetched["composer"]["window_open"])

    def test_open_window_allows_free_text_and_offers_approved_templates(self):
        composer = self.chat.whatsapp_chat_load()["composer"]
        self.assertTrue(composer["reachable"])
        self.assertTrue(composer["window_open"])
        self.assertTrue(composer["window_expires_at"])
        self.assertFalse(composer["notice"])
        self.assertEqual([template["name"] for template in composer["templates"]],
                         ["bienvenida_inmobiliaria (es)", "recordatorio_visita (es)"], "approved ones only")
        self.assertIn("Hola Lucía Fernández", composer["templates"][0]["preview"])

    def test_closed_window_says_why_and_opted_out_contacts_get_no_marketing(self):
        self.conversation.last_inbound_at = fields.Datetime.now() - timedelta(hours=25)
        composer = self.chat.whatsapp_chat_load()["composer"]
        self.assertFalse(composer["window_open"])
        self.assertIn("24 hours", composer["notice"])
        self.lead.whatsapp_opt_out = True
        composer = self.chat.whatsapp_chat_load()["composer"]
        self.assertTrue(composer["opted_out"])
        self.assertEqual([template["name"] for template in composer["templates"]], ["recordatorio_visita (es)"])

    def test_lead_without_number_cannot_be_written_to(self):
        lead = self._lead(name="Sin número", mobile="12", user_id=self.salesman.id)
        composer = lead.with_user(self.salesman).whatsapp_chat_load()["composer"]
        self.assertFalse(composer["reachable"])
        self.assertIn("no valid WhatsApp number", composer["notice"])
        self.assertEqual(composer["templates"], [])

    def test_salesperson_cannot_read_another_salespersons_chat(self):
        others = self._lead(name="Ajeno", mobile="+34 600 00 03 09", user_id=self.other_salesman.id)
        with self.assertRaises(AccessError):
            others.with_user(self.salesman).whatsapp_chat_load()


@tagged("post_install", "-at_install")
class TestChatSend(ChatCase):

    def test_free_text_is_queued_and_returned(self):
        result = self.chat.whatsapp_chat_send(body="  ¿Le viene bien el jueves?  ")
        [shown] = result["messages"]
        message = self.env["strato.whatsapp.message"].browse(shown["id"])
        self.assertRecordValues(message, [{"direction": "outbound", "state": "queued", "body": "¿Le viene bien el jueves?",
                                           "author_id": self.salesman.id, "conversation_id": self.conversation.id}])
        self.assertEqual(shown["author"], "Ana Vendedora")
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(message.state, "sent")
        self.assertEqual(self.simulator.requests(path_contains="/messages")[-1]["json"]["text"]["body"],
                         "¿Le viene bien el jueves?")

    def test_free_text_outside_the_window_is_refused_with_the_reason(self):
        self.conversation.last_inbound_at = fields.Datetime.now() - timedelta(days=2)
        with self.assertRaisesRegex(UserError, "24 hours"):
            self.chat.whatsapp_chat_send(body="Hola")
        with self.assertRaisesRegex(UserError, "Write a message"):
            self.chat.whatsapp_chat_send(body="   ")

    def test_template_goes_out_when_the_window_is_closed(self):
        self.conversation.last_inbound_at = fields.Datetime.now() - timedelta(days=2)
        [shown] = self.chat.whatsapp_chat_send(template_id=self.template.id)["messages"]
        self.assertEqual(shown["type"], "template")
        self.assertEqual(shown["body"], "Hola Lucía Fernández, gracias por escribirnos.")
        self.assertEqual(shown["state"], "queued")

    def test_files_go_one_per_message_with_the_text_as_caption(self):
        photo = self._lead_attachment("fachada.png", PNG, "image/png")
        plan = self._lead_attachment("plano.pdf", b"%PDF-1.4 plano", "application/pdf")
        shown = self.chat.whatsapp_chat_send(body="Le paso fotos y plano", attachment_ids=[photo.id, plan.id])["messages"]
        self.assertEqual([(message["type"], message["body"]) for message in shown],
                         [("image", "Le paso fotos y plano"), ("document", "")])
        self.assertEqual(shown[1]["attachments"][0]["name"], "plano.pdf")

    def test_text_before_an_audio_goes_on_its_own(self):
        voice = self._lead_attachment("nota.ogg", b"OggS audio", "audio/ogg")
        shown = self.chat.whatsapp_chat_send(body="Escuche esto", attachment_ids=[voice.id])["messages"]
        self.assertEqual([(message["type"], message["body"]) for message in shown],
                         [("text", "Escuche esto"), ("audio", "")])

    def test_files_of_another_record_are_refused(self):
        foreign = self.env["ir.attachment"].create({"name": "x.png", "raw": PNG, "mimetype": "image/png",
                                                    "res_model": "res.partner", "res_id": self.salesman.partner_id.id})
        with self.assertRaisesRegex(UserError, "Attach the files"):
            self.chat.whatsapp_chat_send(attachment_ids=[foreign.id])

    def _lead_attachment(self, name, raw, mimetype):
        return self.env["ir.attachment"].with_user(self.salesman).create({
            "name": name, "raw": raw, "mimetype": mimetype, "res_model": "crm.lead", "res_id": self.lead.id})


@tagged("post_install", "-at_install")
class TestChatRead(ChatCase):

    def test_an_agents_read_never_collides_with_the_processing_cron(self):
        """The collision users saw ("could not serialize access"), with committed rows and two transactions:
        the agent's request has its snapshot, the cron commits a change to the message and to its
        conversation, then the agent marks the chat read. Nothing the cron writes is written by the agent:
        the read is applied by the cron afterwards."""
        registry = self.env.registry
        with registry.cursor() as cr:
            env = self.env(cr=cr)
            lead = env["crm.lead"].create({"name": "Choque", "mobile": "+34 600 10 99 02"})
            conversation = env["strato.whatsapp.conversation"].create({
                "account_id": env.ref("strato_whatsapp.demo_account").id, "wa_id": "34600109902", "lead_id": lead.id})
            message = env["strato.whatsapp.message"].create({
                "conversation_id": conversation.id, "direction": "inbound", "state": "received", "body": "Hola",
                "wamid": "wamid.collide", "chatter_pending": True})
            lead_id, conversation_id, message_id = lead.id, conversation.id, message.id
        try:
            with registry.cursor() as agent_cr, registry.cursor() as cron_cr:
                agent_lead = self.env(cr=agent_cr)["crm.lead"].browse(lead_id)
                self.assertEqual(agent_lead.whatsapp_chat_load()["unread"], 1)  # the agent's snapshot
                cron = self.env(cr=cron_cr)
                cron["strato.whatsapp.message"].browse(message_id).write({"chatter_pending": False})
                cron["strato.whatsapp.conversation"].browse(conversation_id).write(
                    {"last_inbound_at": fields.Datetime.now()})
                cron_cr.commit()
                self.assertEqual(agent_lead.whatsapp_chat_mark_read(), 1)
                agent_lead.env.flush_all()
                agent_cr.commit()  # with a write of the message or of its conversation, this failed
            with registry.cursor() as cr:
                self.env(cr=cr)["strato.whatsapp.webhook.event"]._cron_process()
            with registry.cursor() as cr:
                cr.execute("SELECT is_read FROM strato_whatsapp_message WHERE id = %s", [message_id])
                self.assertTrue(cr.fetchone()[0], "the cron applied the read")
                cr.execute("SELECT unread_count FROM strato_whatsapp_conversation WHERE id = %s", [conversation_id])
                self.assertEqual(cr.fetchone()[0], 0)
                cr.execute("SELECT count(*) FROM strato_whatsapp_read_request")
                self.assertEqual(cr.fetchone()[0], 0, "applied requests are gone")
        finally:
            with registry.cursor() as cr:
                self.env(cr=cr)["strato.whatsapp.conversation"].browse(conversation_id).unlink()
                self.env(cr=cr)["crm.lead"].browse(lead_id).unlink()

    def test_reading_a_moved_conversation_leaves_the_other_leads_messages_unread(self):
        """The conversation moved from a colleague's lead to this one: what it said on their lead is
        theirs to read."""
        colleagues = self._lead(name="Anterior", mobile="+34 600 00 03 99", user_id=self.other_salesman.id)
        theirs = self._message(self.conversation, "en su lead", lead_id=colleagues.id)
        mine = self._inbound("en el mío")
        self.chat.whatsapp_chat_mark_read()
        self.env["strato.whatsapp.webhook.event"]._cron_process()
        self.assertTrue(mine.is_read)
        self.assertFalse(theirs.is_read)

    def test_a_message_still_in_the_chatter_pass_is_read_once_posted(self):
        message = self._inbound("uno")
        message.chatter_pending = True  # the cron has not posted it yet: its row is the chatter pass's
        self.chat.whatsapp_chat_mark_read()
        self.env["strato.whatsapp.read.request"]._apply_pending()
        self.assertFalse(message.is_read, "left to the cron's next round")
        message.chatter_pending = False
        self.env["strato.whatsapp.read.request"]._apply_pending()
        self.assertTrue(message.is_read)

    def test_opening_the_chat_marks_received_messages_read(self):
        first, second = self._inbound("uno", minutes_ago=2), self._inbound("dos", minutes_ago=1)
        reaction = self._inbound("❤️", message_type="reaction", reply_to_wamid="wamid.out.x")
        self.assertEqual(self.conversation.unread_count, 3)
        self.assertEqual(self.chat.whatsapp_chat_mark_read(), 3)
        self.assertFalse(first.is_read, "the request only records the read (no write the cron could meet)")
        self.env["strato.whatsapp.webhook.event"]._cron_process()  # the processing cron applies reads
        self.assertTrue(first.is_read and second.is_read and reaction.is_read)
        self.assertEqual(self.conversation.unread_count, 0)
        self.assertFalse(first.read_receipt_state, "this number does not send read receipts")
        self.assertEqual(self.chat.whatsapp_chat_mark_read(), 0)

    def test_read_receipts_go_to_meta_from_the_cron_newest_message_only(self):
        self.account.send_read_receipts = True
        first, second = self._inbound("uno", minutes_ago=2), self._inbound("dos", minutes_ago=1)
        self.chat.whatsapp_chat_mark_read()
        self.env["strato.whatsapp.webhook.event"]._cron_process()  # the processing cron applies reads
        self.assertEqual((first | second).mapped("read_receipt_state"), ["pending", "pending"])
        self.assertFalse(self.simulator.requests(path_contains="/messages"), "nothing is sent in the user's request")
        self.env["strato.whatsapp.message"]._cron_send_read_receipts()
        [request] = self.simulator.requests(path_contains="/messages")
        self.assertEqual(request["json"], {"messaging_product": "whatsapp", "status": "read", "message_id": second.wamid})
        self.assertEqual((first | second).mapped("read_receipt_state"), ["done", "done"])

    def test_a_receipt_meta_refuses_is_dropped_after_a_few_tries(self):
        self.account.send_read_receipts = True
        message = self._inbound("uno")
        self.chat.whatsapp_chat_mark_read()
        self.env["strato.whatsapp.webhook.event"]._cron_process()  # the processing cron applies reads
        self.simulator.set_faults([{"path_contains": "/messages", "kind": "http", "status": 500, "code": 131000}])
        for _attempt in range(4):
            self.env["strato.whatsapp.message"]._cron_send_read_receipts()
            self.assertEqual(message.read_receipt_state, "pending")
        self.env["strato.whatsapp.message"]._cron_send_read_receipts()
        self.assertEqual(message.read_receipt_state, "failed")

    def test_inbox_mark_as_read_also_queues_receipts(self):
        self.account.send_read_receipts = True
        message = self._inbound("uno")
        self.conversation.with_user(self.salesman).action_mark_read()
        self.env["strato.whatsapp.webhook.event"]._cron_process()  # the processing cron applies reads
        self.assertTrue(message.is_read)
        self.assertEqual(message.read_receipt_state, "pending")


@tagged("post_install", "-at_install")
class TestChatLiveUpdates(ChatCase):

    def _notifications(self):
        self.env.cr.precommit.run()  # the bus rows are written when the transaction commits
        return [(json.loads(bus.channel), json.loads(bus.message)) for bus in self.env["bus.bus"].search(
            [("message", "ilike", "strato_whatsapp/messages")], order="id")]

    def test_changes_are_announced_once_per_lead_on_its_channel(self):
        self.env["bus.bus"].search([]).unlink()
        message = self._outbound("Hola", wamid="wamid.out.live", state="sent")
        message.state = "delivered"
        message.reaction_emoji = "❤️"
        [(channel, notification)] = self._notifications()
        self.assertEqual(channel, [self.env.cr.dbname, "crm.lead", self.lead.id, "strato_whatsapp"])
        self.assertEqual(notification["payload"], {"lead_id": self.lead.id, "message_ids": [message.id]})

    def test_an_opt_out_redraws_the_open_chats_reply_box(self):
        self.env["bus.bus"].search([]).unlink()
        self.lead.with_user(self.salesman).whatsapp_opt_out = True
        [(_channel, notification)] = self._notifications()
        self.assertEqual(notification["payload"], {"lead_id": self.lead.id, "message_ids": []})
        self.assertTrue(self.chat.whatsapp_chat_fetch([])["composer"]["opted_out"], "what the panel then draws")

    def test_only_users_who_can_read_the_lead_listen_to_it(self):
        others = self._lead(name="Ajeno", mobile="+34 600 00 03 09", user_id=self.other_salesman.id)
        asked = ["broadcast-x", f"strato_whatsapp_lead_{self.lead.id}", f"strato_whatsapp_lead_{others.id}"]
        Websocket = self.env["ir.websocket"]
        kept, leads = Websocket.with_user(self.salesman)._strato_whatsapp_lead_channels(asked)
        self.assertEqual(kept, ["broadcast-x"])
        self.assertEqual(leads, [(self.lead, "strato_whatsapp")])
        _kept, leads = Websocket.with_user(self.plain_salesman)._strato_whatsapp_lead_channels(asked)
        self.assertEqual(leads, [], "a salesperson without WhatsApp access hears nothing")


@tagged("post_install", "-at_install")
class TestInbox(ChatCase):

    def test_conversation_shows_last_message_unread_and_failures(self):
        self._inbound("¿Sigue disponible el ático?", minutes_ago=5)
        failed = self._outbound("Sí, sigue disponible " + "y tiene terraza " * 8, minutes_ago=1, state="failed")
        conversation = self.conversation
        self.assertTrue(conversation.last_message_preview.startswith("Sí, sigue disponible"))
        self.assertLessEqual(len(conversation.last_message_preview), 80)
        self.assertEqual(conversation.last_message_direction, "outbound")
        self.assertRecordValues(conversation, [{"unread_count": 1, "has_unread": True, "failed_count": 1, "has_failed": True}])
        Conversation = self.env["strato.whatsapp.conversation"]
        self.assertIn(conversation, Conversation.search([("has_failed", "=", True)]))
        self.assertIn(conversation, Conversation.search([("window_open", "=", True)]))
        failed.action_retry()
        self.assertFalse(conversation.has_failed, "retried: nothing failed any more")
        groups = Conversation.read_group([("id", "=", conversation.id)], ["has_unread"], ["has_unread"])
        self.assertEqual(groups[0]["has_unread"], True)

    def test_open_chat_goes_to_the_lead(self):
        action = self.conversation.action_open_chat()
        self.assertEqual((action["res_model"], action["res_id"]), ("crm.lead", self.lead.id))


@tagged("post_install", "-at_install")
class TestAccountHealth(ChatCase):

    def test_last_webhook_and_failures_of_the_last_day(self):
        self.assertFalse(self.account.last_webhook_at)
        Event = self.env["strato.whatsapp.webhook.event"]
        Event.create({"account_id": self.account.id, "payload": "{}"})
        Event.create({"account_id": self.account.id, "payload": "{}", "state": "failed"})
        self._outbound("falló hoy", state="failed", failed_at=fields.Datetime.now())
        self._outbound("falló antes", state="failed", failed_at=fields.Datetime.now() - timedelta(days=2))
        self.account.invalidate_recordset()
        self.assertTrue(self.account.last_webhook_at)
        self.assertEqual(self.account.failed_event_count_24h, 1)
        self.assertEqual(self.account.failed_message_count_24h, 1)
        action = self.account.action_open_failed_messages()
        self.assertEqual(self.env["strato.whatsapp.message"].search_count(action["domain"]), 1)
        self.assertEqual(self.account.with_user(self.salesman).failed_message_count_24h, 1,
                         "salespeople read the account's health too")
