from odoo.tests import new_test_user, tagged

from .common import WhatsappCase, WhatsappHttpCase, payloads


@tagged("post_install", "-at_install")
class TestNewContactsReachSomeone(WhatsappHttpCase):
    """A lead created by a new contact's first message always reaches a person: its salesperson, else
    CRM's rule-based assignment (woken at once), else the account's users to tell, else the team's leader,
    else the WhatsApp administrators; each gets an activity to answer."""

    def _activities(self, lead):
        return self.env["mail.activity"].search([("res_model", "=", "crm.lead"), ("res_id", "=", lead.id)])

    def test_the_accounts_salesperson_gets_the_lead_and_an_activity(self):
        self.account.user_id = self.salesman
        lead = self._receive(self._inbound(wa_id="34600000561", profile="Marta", body="Hola")).lead_id
        self.assertEqual(lead.user_id, self.salesman)
        activity = self._activities(lead)
        self.assertRecordValues(activity, [{"user_id": self.salesman.id, "summary": "New WhatsApp contact: answer them"}])
        self.assertIn("Marta wrote on WhatsApp for the first time", str(activity.note))

    def test_without_salesperson_the_users_to_tell_get_an_activity(self):
        self.account.write({"user_id": False, "notify_user_ids": [(6, 0, [self.other_salesman.id])]})
        lead = self._receive(self._inbound(wa_id="34600000562", profile="Pedro", body="Hola")).lead_id
        self.assertFalse(lead.user_id)
        self.assertEqual(self._activities(lead).user_id, self.other_salesman)
        self.assertIn("has no salesperson yet", str(self._activities(lead).note))

    def test_nobody_configured_tells_the_whatsapp_administrators(self):
        self.account.write({"user_id": False, "notify_user_ids": [(5, 0, 0)], "team_id": False})
        admin = new_test_user(self.env, login="wa_admin_told", groups="strato_whatsapp.group_whatsapp_admin")
        lead = self._receive(self._inbound(wa_id="34600000563", profile="Rosa", body="Hola")).lead_id
        self.assertIn(admin, self._activities(lead).user_id, "someone is always told")

    def test_rule_based_assignment_is_woken_for_new_leads(self):
        self.account.user_id = False
        self.env["ir.config_parameter"].sudo().set_param("crm.lead.auto.assignment", True)
        cron = self.env.ref("crm.ir_cron_crm_lead_assign")
        cron.active = True
        triggers = self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)])
        self._receive(self._inbound(wa_id="34600000564", profile="Luis", body="Hola"))
        self.assertEqual(self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)]), triggers + 1,
                         "CRM's assignment runs now, not at its next hourly run")

    def test_a_profile_name_is_text_in_the_activity_and_capped(self):
        self.account.user_id = self.salesman
        name = '<a href="https://evil.example/login">Verifique</a><img src="https://evil.example/p.png">'
        lead = self._receive(self._inbound(wa_id="34600000566", profile=name + "x" * 1000, body="Hola")).lead_id
        note = str(self._activities(lead).note)
        self.assertNotIn("<a ", note)
        self.assertNotIn("<img", note)
        self.assertIn("&lt;a href", note, "shown as the text the contact typed")
        self.assertLessEqual(len(lead.contact_name), 128, "a forged megabyte name is cut")

    def test_users_to_tell_of_another_company_are_not_told(self):
        other = self.env["res.company"].create({"name": "Otra Inmobiliaria"})
        outsider = new_test_user(self.env, login="wa_other_company", groups="strato_whatsapp.group_whatsapp_user",
                                 company_id=other.id, company_ids=[(6, 0, other.ids)])
        self.account.write({"user_id": False, "notify_user_ids": [(6, 0, outsider.ids)]})
        lead = self._receive(self._inbound(wa_id="34600000567", profile="Eva", body="Hola")).lead_id
        self.assertNotIn(outsider, self._activities(lead).user_id)
        self.assertTrue(self._activities(lead), "someone of the lead's company is told instead")

    def test_a_sender_without_profile_name_gets_a_named_lead_too(self):
        lead = self._receive(self._inbound(wa_id="34600000565", profile=None, body="Hola")).lead_id
        self.assertEqual(lead.name, "WhatsApp: +34 600 00 05 65")


@tagged("post_install", "-at_install")
class TestInboundMessages(WhatsappHttpCase):

    def test_text_from_unknown_number_creates_lead_conversation_and_chatter(self):
        message = self._receive(self._inbound(wa_id="34600000555", profile="Lucía Fernández", body="¿Sigue disponible?"))
        self.assertRecordValues(message, [{
            "direction": "inbound", "message_type": "text", "state": "received",
            "body": "¿Sigue disponible?", "is_read": False}])
        lead = message.lead_id
        self.assertTrue(lead)
        self.assertEqual(lead.name, "WhatsApp: Lucía Fernández (+34 600 00 05 55)")
        self.assertEqual(lead.contact_name, "Lucía Fernández")
        self.assertEqual(lead.whatsapp_number, "+34600000555")
        self.assertEqual(lead.source_id, self.env.ref("strato_whatsapp.utm_source_whatsapp"))
        self.assertFalse(lead.user_id, "new WhatsApp leads wait for a salesperson, not OdooBot")
        self.assertTrue(lead.stage_id, "the first stage of the team")
        conversation = message.conversation_id
        self.assertRecordValues(conversation, [{
            "wa_id": "34600000555", "lead_id": lead.id, "profile_name": "Lucía Fernández",
            "unread_count": 1, "window_open": True, "account_id": self.account.id}])
        chatter = lead.message_ids.filtered(lambda mail: mail.message_type == "comment")
        self.assertEqual(len(chatter), 1)
        self.assertIn("¿Sigue disponible?", chatter.body)
        self.assertEqual(message.mail_message_id, chatter)
        self.assertTrue(message.created_lead)
        created = lead.message_ids.filtered(lambda mail: mail.subtype_id == self.env.ref("crm.mt_lead_create"))
        self.assertEqual(len(created), 1, "Odoo's lead-created notice, posted once, with the first message")
        self.assertLess(created.id, chatter.id)
        again = self._receive(self._inbound(wa_id="34600000555", body="¿Y el precio?", wamid="wamid.second"))
        self.assertEqual(again.lead_id, lead)
        self.assertFalse(again.created_lead)
        self.assertEqual(len(lead.message_ids.filtered(lambda mail: mail.subtype_id == created.subtype_id)), 1)

    def test_sender_matches_existing_lead_typed_in_national_format(self):
        lead = self._lead(name="Departamento en Palermo", phone="011 15 2345-6789",
                          country_id=self.env.ref("base.ar").id, user_id=self.salesman.id)
        message = self._receive(self._inbound(wa_id="5491123456789", profile="Martín"))
        self.assertEqual(message.lead_id, lead)
        self.assertEqual(message.conversation_id.lead_id, lead)
        spanish = self._lead(name="Piso", mobile="600 00 00 02", country_id=self.env.ref("base.es").id)
        self.assertEqual(self._receive(self._inbound(wa_id="34600000002")).lead_id, spanish)

    def test_most_recent_open_lead_wins_and_won_or_lost_leads_are_left_alone(self):
        older = self._lead(name="Antiguo", mobile="+34 600 00 00 03")
        newer = self._lead(name="Reciente", mobile="+34 600 00 00 03")
        self.assertEqual(self._receive(self._inbound(wa_id="34600000003")).lead_id, newer)

        won_stage = self.env["crm.stage"].search([("is_won", "=", True)], limit=1)
        newer.stage_id = won_stage
        older.action_archive()  # lost
        message = self._receive(self._inbound(wa_id="34600000003", body="Hola otra vez"))
        self.assertNotIn(message.lead_id, older | newer, "a returning customer becomes a new lead")
        self.assertEqual(message.conversation_id.lead_id, message.lead_id)
        self.assertEqual(len(message.conversation_id), 1, "still one conversation per number")
        history = self.env["strato.whatsapp.message"].search([("conversation_id", "=", message.conversation_id.id)])
        self.assertEqual(history.lead_id, message.lead_id | newer, "old messages stay on the won lead")

    def test_redelivered_message_is_stored_once(self):
        payload = self._inbound(wa_id="34600000004")
        first = self._receive(payload)
        again = self._receive(payload)
        self.assertEqual(len(first), 1)
        self.assertFalse(again)
        self.assertEqual(first.conversation_id.unread_count, 1)
        self.assertEqual(len(first.lead_id.message_ids.filtered(lambda mail: mail.message_type == "comment")), 1)

    def test_every_message_type(self):
        cases = [
            ("text", {"body": "Hola"}, "text", "Hola"),
            ("image", {"caption": "La fachada"}, "image", "La fachada"),
            ("video", {"caption": "Visita virtual"}, "video", "Visita virtual"),
            ("audio", {"voice": True}, "audio", ""),
            ("document", {"filename": "nomina.pdf", "caption": "Mi nómina"}, "document", "Mi nómina"),
            ("sticker", {}, "sticker", ""),
            ("location", {"latitude": 40.4168, "longitude": -3.7038, "name": "Sol", "address": "Puerta del Sol, Madrid"},
             "location", "Sol, Puerta del Sol, Madrid"),
            ("contacts", {}, "contacts", "Ana García"),
            ("interactive", {"interactive_type": "button_reply", "reply_id": "visit", "title": "Quiero visitar"},
             "interactive", "Quiero visitar"),
            ("interactive", {"interactive_type": "list_reply", "reply_id": "2d", "title": "2 dormitorios"},
             "interactive", "2 dormitorios"),
            ("button", {"payload": "Ver propiedades", "text": "Ver propiedades"}, "button", "Ver propiedades"),
            ("order", {}, "order", "Order of 1 item(s)"),
            ("system", {"new_wa_id": "34600000999"}, "system", "cambió"),
            ("unsupported", {}, "unsupported", "not supported"),
        ]
        for index, (msg_type, fields, expected_type, expected_text) in enumerate(cases):
            body = fields.pop("body", "Usuario cambió de número" if msg_type == "system" else "x")
            message = self._receive(self._inbound(wa_id="34600000010", msg_type=msg_type, body=body, **fields))
            self.assertEqual(len(message), 1, msg_type)
            self.assertEqual(message.message_type, expected_type, msg_type)
            self.assertIn(expected_text, message.body or "", msg_type)
            if msg_type in ("image", "video", "audio", "document", "sticker"):
                self.assertEqual(message.media_state, "pending", msg_type)
                self.assertTrue(message.media_id)
        audio = self.env["strato.whatsapp.message"].search([("message_type", "=", "audio")])
        self.assertTrue(audio.is_voice)
        self.assertIn("Voice message", audio.mail_message_id.body)
        document = self.env["strato.whatsapp.message"].search([("message_type", "=", "document")])
        self.assertEqual(document.media_filename, "nomina.pdf")
        location = self.env["strato.whatsapp.message"].search([("message_type", "=", "location")])
        self.assertIn("40.4168", location.body)
        self.assertAlmostEqual(location.latitude, 40.4168, places=4)

    def test_reaction_lands_on_the_message_it_reacts_to(self):
        original = self._receive(self._inbound(wa_id="34600000011", body="Me encanta"))
        reaction = self._receive(self._inbound(wa_id="34600000011", msg_type="reaction",
                                               message_id=original.wamid, emoji="❤️"))
        self.assertEqual(reaction.message_type, "reaction")
        self.assertEqual(original.reaction_emoji, "❤️")
        self.assertFalse(reaction.mail_message_id, "reactions do not clutter the chatter")
        self._receive(self._inbound(wa_id="34600000011", msg_type="reaction", message_id=original.wamid, emoji=""))
        self.assertFalse(original.reaction_emoji, "an empty emoji removes the reaction")

    def test_lead_created_by_a_reaction_still_gets_its_creation_notice(self):
        reaction = self._receive(self._inbound(wa_id="34600000012", msg_type="reaction", emoji="👍"))
        created = reaction.lead_id.message_ids.filtered(lambda mail: mail.subtype_id == self.env.ref("crm.mt_lead_create"))
        self.assertEqual(len(created), 1)
        self.assertFalse(reaction.created_lead, "the notice was posted at once: nothing of a reaction is posted later")

    def test_batch_of_messages_and_statuses_in_one_post(self):
        outbound = self._outbound_message("34600000020", "wamid.out.batch")
        items = [payloads.message_item(f"346000001{index:02d}", body=f"mensaje {index}") for index in range(30)]
        contacts = [payloads.contact_item(f"346000001{index:02d}", f"Cliente {index}") for index in range(30)]
        statuses = [payloads.status_item("wamid.out.batch", "delivered", "34600000020"),
                    payloads.status_item("wamid.out.batch", "read", "34600000020")]
        value = payloads.messages_value(self.account.phone_number_id, "34600000900", contacts=contacts,
                                        messages=items, statuses=statuses)
        messages = self._receive(payloads.envelope(self.account.business_account_id, [payloads.change(value)]))
        self.assertEqual(len(messages), 30)
        self.assertEqual(len(messages.conversation_id), 30)
        self.assertEqual(len(messages.lead_id), 30)
        self.assertEqual(messages.lead_id.mapped("contact_name"), [f"Cliente {index}" for index in range(30)])
        self.assertEqual(outbound.state, "read")

    def test_bsuid_only_sender_then_both_joins_the_history(self):
        hidden = self._receive(self._inbound(wa_id=None, bsuid="ES.13491208655302741918", profile="Lu",
                                             username="lu.pisos", body="Hola, soy Lu"))
        conversation = hidden.conversation_id
        self.assertFalse(conversation.wa_id)
        self.assertEqual(conversation.bsuid, "ES.13491208655302741918")
        self.assertTrue(hidden.lead_id, "a lead even without a number")
        both = self._receive(self._inbound(wa_id="34600000030", bsuid="ES.13491208655302741918", profile="Lu",
                                           body="Mi número es este"))
        self.assertEqual(both.conversation_id, conversation, "the same conversation")
        self.assertEqual(conversation.wa_id, "34600000030")
        self.assertEqual(self.env["strato.whatsapp.conversation"].search_count(
            [("account_id", "=", self.account.id), "|", ("wa_id", "=", "34600000030"),
             ("bsuid", "=", "ES.13491208655302741918")]), 1)

    def test_bsuid_and_number_conversations_are_merged(self):
        by_number = self._receive(self._inbound(wa_id="34600000031", body="desde el número"))
        by_bsuid = self._receive(self._inbound(wa_id=None, bsuid="ES.999", body="desde el usuario"))
        self.assertNotEqual(by_number.conversation_id, by_bsuid.conversation_id)
        joined = self._receive(self._inbound(wa_id="34600000031", bsuid="ES.999", body="los dos"))
        conversation = joined.conversation_id
        self.assertEqual((by_number | by_bsuid).conversation_id, conversation)
        self.assertEqual(len(conversation.message_ids), 3)
        self.assertRecordValues(conversation, [{"wa_id": "34600000031", "bsuid": "ES.999"}])

    def test_followers_are_notified_and_open_chats_hear_about_it(self):
        lead = self._lead(name="Con comercial", mobile="+34 600 00 00 40", user_id=self.salesman.id)
        self.assertIn(self.salesman.partner_id, lead.message_partner_ids)
        self.env["bus.bus"].search([]).unlink()
        message = self._receive(self._inbound(wa_id="34600000040", body="¿Puedo visitarlo hoy?"))
        notified = self.env["mail.notification"].search([("mail_message_id", "=", message.mail_message_id.id)])
        self.assertIn(self.salesman.partner_id, notified.res_partner_id)
        bus = self.env["bus.bus"].search([("message", "ilike", "strato_whatsapp/messages")])
        self.assertTrue(bus, "the salesperson's open chat gets a live notification")

    def test_opt_out_and_back_in_by_keyword(self):
        lead = self._lead(name="Baja", mobile="+34 600 00 00 50")
        self._receive(self._inbound(wa_id="34600000050", body="  baja "))
        self.assertTrue(lead.whatsapp_opt_out)
        self.assertTrue(self.env["phone.blacklist"].sudo().search([("number", "=", "+34600000050")]))
        self.assertTrue(any("BAJA" in (mail.body or "").upper() for mail in lead.message_ids))
        self._receive(self._inbound(wa_id="34600000050", body="ALTA"))
        self.assertFalse(lead.whatsapp_opt_out)
        self._receive(self._inbound(wa_id="34600000050", body="stop please"))
        self.assertFalse(lead.whatsapp_opt_out, "only the keyword alone counts")
        self.env["ir.config_parameter"].sudo().set_param("strato_whatsapp.opt_out_keywords", "STOP,BAJA,CANCELAR")
        self._receive(self._inbound(wa_id="34600000050", body="Cancelar"))
        self.assertTrue(lead.whatsapp_opt_out)

    def _outbound_message(self, wa_id, wamid, state="sent"):
        lead = self._lead(mobile="+" + wa_id)
        conversation = self._conversation(lead, wa_id)
        return self._message(conversation, "Hola desde la agencia", direction="outbound", wamid=wamid, state=state)


@tagged("post_install", "-at_install")
class TestReceivedMessageInsert(WhatsappCase):
    """Received messages are inserted in one statement per batch, not through ``create``: the rows, the
    cache and what depends on messages must be what ``create`` gives."""

    def _values(self, conversation, wamid, **extra):
        return {"conversation_id": conversation.id, "lead_id": conversation.lead_id.id, "direction": "inbound",
                "message_type": "text", "state": "received", "message_at": "2026-11-20 10:00:00",
                "body": "Hola", "reply_to_wamid": False, "chatter_pending": True, "wamid": wamid, **extra}

    def _image(self, conversation, wamid):
        return self._values(conversation, wamid, message_type="image", body="Mirad la fachada",
                            reply_to_wamid="wamid.quoted", media_id="media.1", media_mime_type="image/jpeg",
                            media_filename=False, media_sha256="abc", media_state="pending", is_voice=False)

    def _rows(self, messages):
        """The rows as stored (NULL stays None), without what differs between any two messages."""
        self.env.flush_all()
        self.env.cr.execute("SELECT row_to_json(message) FROM strato_whatsapp_message AS message WHERE id IN %s"
                            " ORDER BY id", [tuple(messages.ids)])
        skipped = {"id", "wamid", "create_date", "write_date"}
        return [{key: value for key, value in row.items() if key not in skipped} for row, in self.env.cr.fetchall()]

    def test_inserted_messages_equal_created_ones(self):
        lead = self._lead(name="Ático en Chamberí", phone="+34 600 000 321")
        other_lead = self._lead(name="Piso en Vallecas", phone="+34 600 000 323")
        conversation = self._conversation(lead, "34600000321")
        other = self._conversation(other_lead, "34600000323")
        Message = self.env["strato.whatsapp.message"]
        self.assertFalse(conversation.message_ids)  # in cache now: the insert must extend it
        self.assertFalse(lead.whatsapp_message_ids)
        self.assertEqual(conversation.unread_count, 0)
        inserted = Message._insert_received([
            self._image(conversation, "wamid.in.image"), self._values(conversation, "wamid.in.text"),
            self._values(other, "wamid.in.other", message_type="location", latitude=40.4381311,
                         longitude=-3.6995602)])
        self.assertEqual(conversation.message_ids, inserted[:2], "the one2many caches follow the insert")
        self.assertEqual(lead.whatsapp_message_ids, inserted[:2])
        self.assertEqual(other.message_ids, inserted[2])
        self.assertEqual((conversation.unread_count, other.unread_count), (2, 1),
                         "stored computations depending on messages follow")
        created = Message.create([
            self._image(conversation, "wamid.cr.image"), self._values(conversation, "wamid.cr.text"),
            self._values(other, "wamid.cr.other", message_type="location", latitude=40.4381311,
                         longitude=-3.6995602)])

        self.assertEqual(self._rows(inserted), self._rows(created))
        compared = [name for name, field in Message._fields.items()
                    if field.store and name not in ("id", "wamid", "create_date", "write_date")]
        in_cache = inserted.read(compared)
        self.env.invalidate_all()
        self.assertEqual(in_cache, inserted.read(compared), "the cache holds what the database holds")
        self.assertEqual(inserted.account_id, self.account)
        self.assertEqual(inserted.company_id, self.account.company_id)
        self.assertEqual(inserted[0].create_date, created[0].create_date)

    def test_unknown_fields_are_refused_as_create_refuses_them(self):
        conversation = self._conversation(self._lead(), "34600000322")
        with self.assertRaises(ValueError):
            self.env["strato.whatsapp.message"]._insert_received([
                self._values(conversation, "wamid.x", attachment_ids=[(6, 0, [])])])

    def test_automation_rules_on_received_messages_still_run(self):
        conversation = self._conversation(self._lead(), "34600000324")
        self.env["base.automation"].create({
            "name": "Marcar como leído", "trigger": "on_create",
            "model_id": self.env["ir.model"]._get_id("strato.whatsapp.message"),
            "action_server_ids": [(0, 0, {
                "name": "Leído", "state": "object_write", "update_path": "is_read", "update_boolean_value": "true",
                "model_id": self.env["ir.model"]._get_id("strato.whatsapp.message")})],
        })
        message = self.env["strato.whatsapp.message"]._insert_received([self._values(conversation, "wamid.auto")])
        self.assertTrue(message.is_read, "the rule ran on the received message")


@tagged("post_install", "-at_install")
class TestCronTextsInTheLeadsLanguage(WhatsappHttpCase):
    """What the processing cron writes for a lead (chatter posts, notes, texts stored on messages) is in
    its salesperson's language, else its company's: the cron user's language is nobody's."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("es_ES")
        cls.env["ir.module.module"]._load_module_terms(["strato_whatsapp", "crm"], ["es_ES"], overwrite=True)
        cls.salesman.lang = "es_ES"
        cls.lead = cls._lead(name="Chalet en Pozuelo", mobile="+34 600 00 00 70", user_id=cls.salesman.id)

    def test_chatter_post_opt_out_and_failure_note_follow_the_salesperson(self):
        self.assertNotEqual(self.env.lang, "es_ES", "the cron runs in another language here")
        message = self._receive(self._inbound(
            wa_id="34600000070", msg_type="location", latitude=40.43, longitude=-3.80, name="Casa", address="Pozuelo"))
        self.assertIn("[Ubicación]", message.mail_message_id.body)
        self._receive(self._inbound(wa_id="34600000070", body="BAJA"))
        self.assertTrue(any("Pidió dejar de recibir" in (mail.body or "") for mail in self.lead.message_ids))
        conversation = message.conversation_id
        sent = self._message(conversation, "Hola", direction="outbound", wamid="wamid.out.lang", state="sent")
        self._receive(self._status(sent.wamid, "failed", "34600000070", errors=[{"code": 131000}]))
        self.assertEqual(sent.error_message, "Meta no pudo entregar el mensaje por un problema temporal de su lado. "
                                             "Vuelva a intentarlo en unos minutos.")
        self.assertIn("No se pudo entregar un mensaje de WhatsApp", self.lead.message_ids[0].body)

    def test_lead_created_without_salesperson_speaks_the_companys_language(self):
        self.env.company.partner_id.lang = "es_ES"
        message = self._receive(self._inbound(wa_id="34600000071", body="Hola"))
        lead = message.lead_id
        self.assertFalse(lead.user_id)
        created = lead.message_ids.filtered(lambda mail: mail.subtype_id == self.env.ref("crm.mt_lead_create"))
        self.assertIn("Un nuevo lead ha sido creado", created.body)
