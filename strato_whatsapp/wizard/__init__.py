from . import strato_whatsapp_composer
