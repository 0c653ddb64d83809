from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import WhatsappHttpCase, WithGraphSimulator

PDF = b"%PDF-1.4\n% ficha del piso\n" + b"0" * 2048
JPEG = b"\xff\xd8\xff\xe0" + b"\x10JFIF" + b"1" * 4096


@tagged("post_install", "-at_install")
class TestInboundMedia(WithGraphSimulator, WhatsappHttpCase):
    """Media ids from webhooks are fetched from the Graph API (simulator) into attachments, by a cron."""

    def _fetch(self):
        self.env["strato.whatsapp.message"]._cron_fetch_media()

    def test_document_lands_on_the_message_the_lead_and_its_chatter_post(self):
        media_id = self.simulator.add_media(PDF, "application/pdf", "ficha.pdf")
        message = self._receive(self._inbound(wa_id="34600000080", msg_type="document", media_id=media_id,
                                              filename="ficha.pdf", caption="La ficha"))
        self.assertEqual(message.media_state, "pending")
        self._fetch()
        self.assertEqual(message.media_state, "done")
        attachment = message.attachment_ids
        self.assertEqual(attachment.raw, PDF)
        self.assertEqual(attachment.name, "ficha.pdf")
        self.assertEqual(attachment.mimetype, "application/pdf")
        self.assertEqual((attachment.res_model, attachment.res_id), ("crm.lead", message.lead_id.id))
        self.assertEqual(message.mail_message_id.attachment_ids, attachment)
        downloads = self.simulator.requests(path_contains="/_media/")
        self.assertEqual(downloads[-1]["headers"]["authorization"], "Bearer test-token", "bearer required")

    def test_image_without_file_name_gets_one(self):
        media_id = self.simulator.add_media(JPEG, "image/jpeg")
        message = self._receive(self._inbound(wa_id="34600000081", msg_type="image", media_id=media_id,
                                              mime_type="image/jpeg"))
        self._fetch()
        self.assertTrue(message.attachment_ids.name.endswith(".jpg"), message.attachment_ids.name)

    @mute_logger("odoo.addons.strato_whatsapp.models.strato_whatsapp_message")
    def test_failed_download_keeps_the_message_and_retries_later(self):
        media_id = self.simulator.add_media(JPEG, "image/jpeg")
        self.simulator.set_faults([{"path_contains": media_id, "kind": "http", "status": 500, "code": 131000,
                                    "count": 1}])
        message = self._receive(self._inbound(wa_id="34600000082", msg_type="image", media_id=media_id))
        self._fetch()
        self.assertRecordValues(message, [{"media_state": "pending", "media_attempt_count": 1}])
        self.assertTrue(message.media_retry_at)
        self.assertEqual(message.message_type, "image", "the message itself is kept")
        message.media_retry_at = False  # its time has come
        self._fetch()
        self.assertEqual(message.media_state, "done")
        self.assertEqual(message.attachment_ids.raw, JPEG)

    @mute_logger("odoo.addons.strato_whatsapp.models.strato_whatsapp_message")
    def test_oversized_media_is_refused_and_the_salesperson_told(self):
        self.env["ir.config_parameter"].sudo().set_param("strato_whatsapp.media_max_bytes", "1024")
        media_id = self.simulator.add_media(PDF, "application/pdf", "grande.pdf")
        message = self._receive(self._inbound(wa_id="34600000083", msg_type="document", media_id=media_id))
        self._fetch()
        self.assertEqual(message.media_state, "too_large")
        self.assertFalse(message.attachment_ids)
        self.assertIn("could not be downloaded", message.lead_id.message_ids[0].body)

    @mute_logger("odoo.addons.strato_whatsapp.models.strato_whatsapp_message")
    def test_expired_media_id_fails_for_good_with_a_note(self):
        message = self._receive(self._inbound(wa_id="34600000084", msg_type="video", media_id="123456789"))
        for _attempt in range(3):
            message.media_retry_at = False
            self._fetch()
        self.assertEqual(message.media_state, "failed")
        self.assertIn("could not be downloaded", message.lead_id.message_ids[0].body)
        message.action_retry_media()
        self.assertEqual(message.media_state, "pending")
