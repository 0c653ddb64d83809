from . import test_account
from . import test_access_rights
from . import test_lead_whatsapp
from . import test_webhook_endpoint
from . import test_webhook_messages
from . import test_webhook_statuses
from . import test_webhook_media
from . import test_webhook_fuzz
