from . import strato_whatsapp_account
from . import strato_whatsapp_template
from . import strato_whatsapp_conversation
from . import strato_whatsapp_message
from . import strato_whatsapp_early_status
from . import strato_whatsapp_webhook_event
from . import crm_lead
