from . import strato_whatsapp_account
from . import strato_whatsapp_template
from . import strato_whatsapp_conversation
from . import strato_whatsapp_message
from . import crm_lead
