from . import test_account
from . import test_access_rights
from . import test_lead_whatsapp
