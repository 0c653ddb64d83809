import base64
from urllib.parse import parse_qs

from odoo import Command
from odoo.exceptions import UserError, ValidationError
from odoo.tests import Form, tagged
from odoo.tools import mute_logger

from .common import SIM_ACCOUNT, WhatsappCase, WithGraphSimulator

TEMPLATE_LOGGER = "odoo.addons.strato_whatsapp.models.strato_whatsapp_template"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
BIENVENIDA = "Hola {{1}}, gracias por contactarnos. Estamos aquí para ayudarte con tu búsqueda inmobiliaria."


class TemplateCase(WithGraphSimulator, WhatsappCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Template = cls.env["strato.whatsapp.template"]
        cls.lead = cls._lead(name="Piso Chamberí", contact_name="Lucía Fernández", mobile="+34 600 00 05 01",
                             user_id=cls.salesman.id)

    def setUp(self):
        super().setUp()
        self.simulator.clear_templates()

    def _template(self, **vals):
        vals.setdefault("name", "visita_piso")
        vals.setdefault("account_id", self.account.id)
        vals.setdefault("body", "Hola {{1}}, le esperamos el {{2}} en la oficina.")
        return self.Template.create(vals)

    @staticmethod
    def _set_samples(template, **samples):
        for variable in template.variable_ids:
            key = f"button_{variable.button_id.button_type}" if variable.button_id else f"{variable.component}_{variable.name}"
            if key in samples:
                variable.sample = samples[key]

    def _posted(self, path):
        return [request["json"] for request in self.simulator.requests(path_contains=path) if request["method"] == "POST"]


@tagged("post_install", "-at_install")
class TestTemplateData(TemplateCase):

    def test_welcome_template_is_installed_as_a_draft(self):
        template = self.env.ref("strato_whatsapp.template_bienvenida_inmobiliaria")
        self.assertRecordValues(template, [{
            "name": "bienvenida_inmobiliaria", "language": "es", "category": "MARKETING", "status": "draft",
            "body": BIENVENIDA, "account_id": False, "header_type": "none", "meta_template_id": False}])
        self.assertEqual([(button.button_type, button.text) for button in template.button_ids],
                         [("quick_reply", "Ver propiedades")])
        self.assertRecordValues(template.variable_ids, [{"component": "body", "name": "1", "source": "field",
                                                         "field_path": "contact_name"}])
        self.assertIn(template, self.Template.with_user(self.salesman).search([]),
                      "salespeople of the company see the draft")
        self.assertIn("Hola Lucía Fernández, gracias", template._render_text(self.lead))

    def test_a_name_typed_with_accents_keeps_its_letters(self):
        form = Form(self.env["strato.whatsapp.template"])
        form.name = "Confirmación de Visita (Ñandú)"
        self.assertEqual(form.name, "confirmacion_de_visita_nandu")

    def test_an_account_is_needed_to_submit_or_send(self):
        template = self.env.ref("strato_whatsapp.template_bienvenida_inmobiliaria")
        with self.assertRaisesRegex(UserError, "Choose the WhatsApp account"):
            template.action_submit()
        with self.assertRaisesRegex(UserError, "has no WhatsApp account"):
            template._components_for(self.lead)
        with self.assertRaisesRegex(ValidationError, "Only a draft template can be without a WhatsApp account"):
            template.status = "approved"


@tagged("post_install", "-at_install")
class TestTemplateSync(TemplateCase):

    def _seed(self, templates):
        return self.simulator.seed_templates(templates, SIM_ACCOUNT["waba_id"])

    def _account_templates(self):
        return self.Template.with_context(active_test=False).search([("account_id", "=", self.account.id)])

    def test_sync_follows_pages_and_upserts(self):
        self._seed([{"name": f"promo_{number:03}", "language": "es", "category": "MARKETING",
                     "components": [{"type": "BODY", "text": f"Oferta {number}"}]} for number in range(120)])
        self._seed([{"name": "bienvenida_inmobiliaria", "language": "es", "category": "MARKETING",
                     "status": "PENDING", "components": [{"type": "BODY", "text": BIENVENIDA,
                                                          "example": {"body_text": [["Marta"]]}}]}])
        local_draft = self._template(name="promo_005", language="es", body="Borrador local")
        deleted_at_meta = self._template(name="antigua", status="approved")
        deleted_at_meta.meta_template_id = "123456"

        action = self.account.action_sync_templates()

        self.assertEqual(action["params"]["type"], "success")
        self.assertIn("121 template(s) at Meta: 119 new here, 1 no longer at Meta", action["params"]["message"])
        pages = self.simulator.requests(path_contains="/message_templates")
        self.assertEqual(len(pages), 2, "100 templates a page: two pages")
        self.assertIn("after=", pages[1]["query"])
        templates = self._account_templates()
        self.assertEqual(len(templates), 122)
        self.assertRecordValues(local_draft, [{"status": "approved", "body": "Oferta 5"}])
        self.assertTrue(local_draft.meta_template_id, "matched by name and language, now linked by Meta id")
        self.assertRecordValues(deleted_at_meta, [{"meta_missing": True, "status": "approved"}])
        welcome = self.env.ref("strato_whatsapp.template_bienvenida_inmobiliaria")
        self.assertEqual(welcome.account_id, self.account, "the shipped draft is adopted, not duplicated")
        self.assertRecordValues(welcome, [{"status": "pending"}])
        self.assertEqual(welcome.variable_ids.sample, "Marta")
        self.assertEqual(self.account.template_count, 122)

        self.simulator.reset()
        action = self.account.action_sync_templates()
        self.assertIn("0 new here", action["params"]["message"])
        self.assertEqual(len(self._account_templates()), 122, "a second sync creates nothing")

    def test_sync_reads_every_component(self):
        [meta_id] = self._seed([{
            "name": "visita_confirmada", "language": "es_AR", "category": "UTILITY", "status": "REJECTED",
            "rejected_reason": "INVALID_FORMAT", "quality_score": {"score": "YELLOW"},
            "parameter_format": "NAMED",
            "components": [
                {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://scontent.example/x.png"]}},
                {"type": "BODY", "text": "Hola {{first_name}}, su visita es el {{visit_date}}.",
                 "example": {"body_text_named_params": [{"param_name": "first_name", "example": "Marta"},
                                                        {"param_name": "visit_date", "example": "jueves"}]}},
                {"type": "FOOTER", "text": "Strato Inmobiliaria"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Confirmar"},
                    {"type": "URL", "text": "Ver ficha", "url": "https://strato.example/p/{{1}}",
                     "example": ["https://strato.example/p/4521"]},
                    {"type": "PHONE_NUMBER", "text": "Llamar", "phone_number": "+34600000000"},
                    {"type": "COPY_CODE", "text": "Copy offer code", "example": "VISITA10"},
                ]},
            ]}])
        self.account.action_sync_templates()
        template = self._account_templates()
        self.assertRecordValues(template, [{
            "meta_template_id": meta_id, "language": "es_AR", "category": "UTILITY", "status": "rejected",
            "rejected_reason": "INVALID_FORMAT", "quality_score": "YELLOW", "parameter_format": "NAMED",
            "header_type": "image", "footer_text": "Strato Inmobiliaria",
            "body": "Hola {{first_name}}, su visita es el {{visit_date}}."}])
        self.assertEqual([(b.button_type, b.text, b.url, b.phone_number) for b in template.button_ids], [
            ("quick_reply", "Confirmar", False, False),
            ("url", "Ver ficha", "https://strato.example/p/{{1}}", False),
            ("phone_number", "Llamar", False, "+34600000000"),
            ("copy_code", "Copy offer code", False, False)])
        samples = {(v.component, v.button_id.button_type or "", v.name): v.sample for v in template.variable_ids}
        self.assertEqual(samples, {("body", "", "first_name"): "Marta", ("body", "", "visit_date"): "jueves",
                                   ("button", "url", "1"): "4521", ("button", "copy_code", "1"): "VISITA10"})
        self.assertEqual(template.variable_ids.filtered("button_id").mapped("button_index"), [1, 3])

    def test_sync_failure_is_explained(self):
        self.simulator.set_faults([{"path_contains": "/message_templates", "kind": "http", "status": 401,
                                    "code": 190, "message": "Error validating access token"}])
        action = self.account.action_sync_templates()
        self.assertEqual(action["params"]["type"], "danger")
        self.assertIn("access token", action["params"]["message"])

    def test_daily_cron_syncs_every_account(self):
        self.env["strato.whatsapp.account"].search([("id", "!=", self.account.id)]).active = False
        self._seed([{"name": "recordatorio", "language": "es", "components": [{"type": "BODY", "text": "Hola"}]}])
        self.env.ref("strato_whatsapp.ir_cron_whatsapp_template_sync").method_direct_trigger()
        self.assertEqual(self._account_templates().mapped("name"), ["recordatorio"])
        self.simulator.set_faults([{"path_contains": "/message_templates", "kind": "http", "status": 500}])
        with mute_logger(TEMPLATE_LOGGER):
            self.Template._cron_sync_templates()  # logged, not raised: the next run tries again


@tagged("post_install", "-at_install")
class TestTemplateSubmission(TemplateCase):

    def test_submit_sends_meta_the_whole_template(self):
        template = self._template(
            header_type="text", header_text="Visita a {{1}}", footer_text="Strato Inmobiliaria",
            button_ids=[Command.create({"button_type": "quick_reply", "text": "Confirmar", "sequence": 1}),
                        Command.create({"button_type": "quick_reply", "text": "Cambiar fecha", "sequence": 2}),
                        Command.create({"button_type": "url", "text": "Ver ficha", "sequence": 3,
                                        "url": "https://strato.example/p/{{1}}"}),
                        Command.create({"button_type": "phone_number", "text": "Llamar", "sequence": 4,
                                        "phone_number": "+34 600 000 000"}),
                        Command.create({"button_type": "copy_code", "sequence": 5})])
        self._set_samples(template, header_1="Chamberí", body_1="Marta", body_2="jueves",
                          button_url="4521", button_copy_code="VISITA10")

        template.action_submit()

        self.assertEqual(self._posted("/message_templates"), [{
            "name": "visita_piso", "language": "es", "category": "MARKETING", "parameter_format": "POSITIONAL",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Visita a {{1}}", "example": {"header_text": ["Chamberí"]}},
                {"type": "BODY", "text": "Hola {{1}}, le esperamos el {{2}} en la oficina.",
                 "example": {"body_text": [["Marta", "jueves"]]}},
                {"type": "FOOTER", "text": "Strato Inmobiliaria"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Confirmar"},
                    {"type": "QUICK_REPLY", "text": "Cambiar fecha"},
                    {"type": "URL", "text": "Ver ficha", "url": "https://strato.example/p/{{1}}",
                     "example": ["https://strato.example/p/4521"]},
                    {"type": "PHONE_NUMBER", "text": "Llamar", "phone_number": "+34 600 000 000"},
                    {"type": "COPY_CODE", "example": "VISITA10"},
                ]},
            ]}])
        self.assertEqual(template.status, "pending")
        self.assertTrue(template.meta_template_id)

    def test_named_parameters_are_submitted_with_their_names(self):
        template = self._template(parameter_format="NAMED",
                                  body="Hola {{first_name}}, su visita es el {{visit_date}}. Saludos")
        self._set_samples(template, body_first_name="Marta", body_visit_date="jueves")
        template.action_submit()
        [payload] = self._posted("/message_templates")
        self.assertEqual(payload["parameter_format"], "NAMED")
        self.assertEqual(payload["components"], [{
            "type": "BODY", "text": "Hola {{first_name}}, su visita es el {{visit_date}}. Saludos",
            "example": {"body_text_named_params": [{"param_name": "first_name", "example": "Marta"},
                                                   {"param_name": "visit_date", "example": "jueves"}]}}])

    def test_media_header_example_goes_through_the_resumable_upload(self):
        template = self._template(header_type="image", header_file=base64.b64encode(PNG),
                                  header_file_name="fachada.png")
        self._set_samples(template, body_1="Marta", body_2="jueves")
        template.action_submit()
        start, upload = [request for request in self.simulator.requests() if "upload" in request["path"]]
        self.assertTrue(start["path"].endswith(f"/{SIM_ACCOUNT['app_id']}/uploads"))
        self.assertEqual(parse_qs(start["query"]), {"file_name": ["fachada.png"], "file_length": [str(len(PNG))],
                                                    "file_type": ["image/png"]})
        self.assertEqual(upload["headers"]["file_offset"], "0")
        [payload] = self._posted("/message_templates")
        header = payload["components"][0]
        self.assertEqual(set(header), {"type", "format", "example"})
        self.assertEqual((header["type"], header["format"]), ("HEADER", "IMAGE"))
        [handle] = header["example"]["header_handle"]
        self.assertTrue(handle.startswith("4::"))

    def test_edit_after_rejection_and_status_refresh(self):
        template = self._template()
        self._set_samples(template, body_1="Marta", body_2="jueves")
        template.action_submit()
        self.simulator.set_template_status(template.meta_template_id, "REJECTED", "INVALID_FORMAT")
        template.action_refresh_status()
        self.assertRecordValues(template, [{"status": "rejected", "rejected_reason": "INVALID_FORMAT"}])
        self.assertIn("check the variables", template.rejected_reason_text, "Meta's reason in words")
        template.rejected_reason = "SOMETHING_NEW"
        self.assertIn("SOMETHING_NEW", template.rejected_reason_text, "a reason Meta adds later is still shown")

        template.write({"body": "Hola {{1}}, le confirmamos la visita del {{2}}.", "category": "UTILITY"})
        self._set_samples(template, body_2="jueves")
        self.simulator.reset()
        template.action_submit()
        self.assertEqual(self._posted(f"/{template.meta_template_id}"), [{
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hola {{1}}, le confirmamos la visita del {{2}}.",
                            "example": {"body_text": [["Marta", "jueves"]]}}]}])
        self.assertRecordValues(template, [{"status": "pending", "rejected_reason": False}])
        with self.assertRaisesRegex(UserError, "still reviewing"):
            template.action_submit()

        self.simulator.set_template_status(template.meta_template_id, "APPROVED")
        template.action_refresh_status()
        self.assertEqual(template.status, "approved")
        self.simulator.clear_templates()
        template.action_refresh_status()
        self.assertTrue(template.meta_missing)

    def test_meta_refusal_is_explained(self):
        self.simulator.seed_templates([{"name": "visita_piso", "language": "es"}], SIM_ACCOUNT["waba_id"])
        template = self._template()
        self._set_samples(template, body_1="Marta", body_2="jueves")
        with self.assertRaisesRegex(UserError, "Meta did not accept template visita_piso.*already exists"):
            template.action_submit()
        self.assertEqual(template.status, "draft")


@tagged("post_install", "-at_install")
class TestTemplateValidation(TemplateCase):

    def _assert_refused(self, template, *reasons):
        with self.assertRaises(UserError) as caught:
            template.action_submit()
        for reason in reasons:
            self.assertIn(reason, str(caught.exception))
        self.assertFalse(self.simulator.requests(), "nothing reaches Meta before the template is valid")

    def test_name_language_and_lengths(self):
        template = self._template(name="Visita Piso", language="spanish", body="Hola {{1}} " + "x" * 1030 + " {{2}}.",
                                  footer_text="Pie {{1}}")
        self._set_samples(template, body_1="Marta", body_2="jueves")
        self._assert_refused(template, "lowercase letters, digits and underscores", "Meta's codes",
                             "Meta allows 1024", "footer cannot hold placeholders")

    def test_placeholders_numbered_without_gaps_and_examples(self):
        template = self._template(body="Hola {{1}}, su visita es el {{3}}.")
        self._assert_refused(template, "numbered from {{1}} without gaps (found {{1}}, {{3}})",
                             "Give an example for {{1}} of the body")
        template.body = "{{1}} le espera el {{2}}"
        self._set_samples(template, body_1="Marta", body_2="jueves")
        self._assert_refused(template, "cannot start or end with a placeholder")
        template.body = "Hola {{nombre}}, le esperamos."
        self._set_samples(template, body_nombre="Marta")
        self._assert_refused(template, "uses named placeholders but the parameter format is Numbered")
        template.header_type = "text"
        template.header_text = "{{1}} y {{2}}"
        self._assert_refused(template, "only one placeholder")

    def test_button_limits(self):
        urls = [Command.create({"button_type": "url", "text": f"Web {index}", "url": "https://strato.example"})
                for index in range(3)]
        template = self._template(category="UTILITY", button_ids=[
            Command.create({"button_type": "quick_reply", "text": "Sí"}), *urls,
            Command.create({"button_type": "quick_reply", "text": "Una etiqueta demasiado larga para Meta"}),
            Command.create({"button_type": "copy_code"}),
            Command.create({"button_type": "phone_number", "text": "Llamar", "phone_number": "600"})])
        self._set_samples(template, body_1="Marta", body_2="jueves")
        self._assert_refused(template, "at most 2 “Visit Website” button(s)",
                             "only allowed in marketing templates", "Keep the quick replies together",
                             "labels have at most 25 characters", "copy code button needs an example code",
                             "with its country code")

    def test_media_header_needs_its_example_file_and_the_app(self):
        template = self._template(header_type="video")
        self._set_samples(template, body_1="Marta", body_2="jueves")
        self._assert_refused(template, "needs an example file")
        template.write({"header_file": base64.b64encode(PNG), "header_file_name": "fachada.png"})
        self.account.app_id = False
        self._assert_refused(template, "takes video/mp4", "Set the Meta App ID")


@tagged("post_install", "-at_install")
class TestTemplateVariables(TemplateCase):

    def _variable(self, template, name, component="body"):
        return template.variable_ids.filtered(lambda v: v.component == component and v.name == name)

    def test_rendering_with_missing_values_and_fallbacks(self):
        template = self._template(body="Hola {{1}}, soy {{2}}. ¿Sigue buscando en {{3}}?")
        self._variable(template, "1").fallback = "cliente"
        self._variable(template, "2").source = "salesperson"
        self._variable(template, "3").field_path = "city"
        lead = self._lead(name="Sin nombre", mobile="+34 600 00 05 02", user_id=self.salesman.id)

        self.assertEqual(template._render_text(lead), "Hola cliente, soy Ana Vendedora. ¿Sigue buscando en {{3}}?")
        with self.assertRaisesRegex(UserError, r"no value for \{\{3\}\} on Sin nombre; set a fallback"):
            template._components_for(lead)

        self._variable(template, "3").write({"source": "fixed", "fixed_value": "Madrid"})
        self.assertEqual(template._components_for(lead), [{"type": "body", "parameters": [
            {"type": "text", "text": "cliente"}, {"type": "text", "text": "Ana Vendedora"},
            {"type": "text", "text": "Madrid"}]}])

    def test_preview_for_a_chosen_lead(self):
        template = self._template(footer_text="Strato", button_ids=[
            Command.create({"button_type": "quick_reply", "text": "Ver propiedades"})])
        self._set_samples(template, body_1="Marta", body_2="jueves")
        self.assertEqual(template.preview_text, "Hola Marta, le esperamos el jueves en la oficina.\nStrato",
                         "without a lead: the examples")
        template.preview_lead_id = self.lead
        self._variable(template, "2").write({"source": "fixed", "fixed_value": "*lunes*"})
        self.assertEqual(template.preview_text, "Hola Lucía Fernández, le esperamos el *lunes* en la oficina.\nStrato")
        self.assertIn("<b>lunes</b>", template.preview_html)
        self.assertIn("Ver propiedades", template.preview_html)

    def test_variables_follow_the_placeholders(self):
        template = self._template(button_ids=[Command.create({"button_type": "url", "text": "Ficha",
                                                              "url": "https://strato.example/p/{{1}}"})])
        self.assertEqual(sorted((v.component, v.name) for v in template.variable_ids),
                         [("body", "1"), ("body", "2"), ("button", "1")])
        template.body = "Hola {{1}}, gracias."
        template.button_ids.url = "https://strato.example/"
        self.assertEqual([(v.component, v.name) for v in template.variable_ids], [("body", "1")])
        copy = template.copy()
        self.assertEqual(copy.name, "visita_piso_copy")
        self.assertEqual(len(copy.variable_ids), 1)


@tagged("post_install", "-at_install")
class TestTemplateSendPayload(TemplateCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lead_2 = cls._lead(name="Ático Retiro", contact_name="Pablo Ruiz", mobile="+34 600 00 05 03",
                               user_id=cls.salesman.id)
        cls._conversation(cls.lead, "34600000501")
        cls._conversation(cls.lead_2, "34600000503")

    def _sent_templates(self):
        return [request["json"]["template"] for request in self.simulator.requests(path_contains="/messages")]

    def _send(self, template, leads):
        messages, skipped = self.env["strato.whatsapp.message"]._enqueue_for_leads(leads, template=template)
        self.assertFalse(skipped)
        self.env["strato.whatsapp.message"]._cron_send()
        self.assertEqual(set(messages.mapped("state")), {"sent"}, messages.mapped("error_message"))
        return messages

    def test_header_body_and_button_parameters_as_meta_expects(self):
        template = self._template(
            status="approved", header_type="image", header_file=base64.b64encode(PNG), header_file_name="fachada.png",
            body="Hola {{2}} y {{1}}, le esperamos.",
            button_ids=[Command.create({"button_type": "quick_reply", "text": "Confirmar", "sequence": 1}),
                        Command.create({"button_type": "url", "text": "Ficha", "sequence": 2,
                                        "url": "https://strato.example/p/{{1}}"}),
                        Command.create({"button_type": "copy_code", "sequence": 3})])
        variables = template.variable_ids
        variables.filtered(lambda v: v.component == "body" and v.name == "2").write(
            {"source": "salesperson"})
        variables.filtered(lambda v: v.button_id.button_type == "url").write(
            {"source": "field", "field_path": "id"})
        variables.filtered(lambda v: v.button_id.button_type == "copy_code").write({"fixed_value": "VISITA10"})

        self._send(template, self.lead | self.lead_2)

        uploads = self.simulator.requests(path_contains="/media")
        self.assertEqual(len(uploads), 1, "the header file is uploaded once, then its media id is reused")
        media_id = template.header_media_id
        self.assertTrue(media_id)
        first, second = self._sent_templates()
        self.assertEqual(first, {"name": "visita_piso", "language": {"code": "es"}, "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"id": media_id}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Lucía Fernández"},
                                            {"type": "text", "text": "Ana Vendedora"}]},
            {"type": "button", "sub_type": "url", "index": "1",
             "parameters": [{"type": "text", "text": str(self.lead.id)}]},
            {"type": "button", "sub_type": "copy_code", "index": "2",
             "parameters": [{"type": "coupon_code", "coupon_code": "VISITA10"}]},
        ]})
        self.assertEqual(second["components"][0], first["components"][0])
        self.assertEqual(second["components"][1]["parameters"][0]["text"], "Pablo Ruiz")

    def test_expired_media_id_is_uploaded_again_and_links_need_no_upload(self):
        template = self._template(status="approved", header_type="document", header_file=base64.b64encode(b"%PDF-1.4"),
                                  header_file_name="ficha.pdf", body="Hola {{1}}, le enviamos la ficha.")
        template.write({"header_media_id": "old-media", "header_media_phone_number_id": SIM_ACCOUNT["phone_number_id"],
                        "header_media_uploaded_at": "2020-01-01 00:00:00"})
        self._send(template, self.lead)
        header = self._sent_templates()[0]["components"][0]
        self.assertNotEqual(template.header_media_id, "old-media")
        self.assertEqual(header, {"type": "header", "parameters": [
            {"type": "document", "document": {"id": template.header_media_id, "filename": "ficha.pdf"}}]})

        self.simulator.reset()
        template.header_media_link = "https://strato.example/ficha.pdf"
        self._send(template, self.lead_2)
        self.assertFalse(self.simulator.requests(path_contains="/media"))
        self.assertEqual(self._sent_templates()[0]["components"][0]["parameters"][0]["document"],
                         {"link": "https://strato.example/ficha.pdf", "filename": "ficha.pdf"})

    def test_named_parameters_are_sent_with_their_names(self):
        template = self._template(status="approved", parameter_format="NAMED",
                                  body="Hola {{first_name}}, su asesora es {{agent}}.")
        template.variable_ids.filtered(lambda v: v.name == "agent").source = "salesperson"
        self._send(template, self.lead)
        self.assertEqual(self._sent_templates()[0]["components"], [{"type": "body", "parameters": [
            {"type": "text", "text": "Lucía Fernández", "parameter_name": "first_name"},
            {"type": "text", "text": "Ana Vendedora", "parameter_name": "agent"}]}])

    def test_a_media_template_without_its_file_is_refused_with_a_reason(self):
        template = self._template(status="approved", header_type="image")
        with self.assertRaisesRegex(UserError, "has a media header: add its file"):
            self.env["strato.whatsapp.message"]._enqueue_for_leads(self.lead, template=template, raise_on_skip=True)
