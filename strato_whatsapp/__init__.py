from . import controllers
from . import models
from . import wizard


def _post_init_hook(env):
    env["strato.whatsapp.account"]._sync_from_environment()
