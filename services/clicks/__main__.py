import eventlet

eventlet.monkey_patch()

from psycogreen.eventlet import patch_psycopg  # noqa: E402

patch_psycopg()

from services.clicks.service import ClicksService  # noqa: E402
from services.common.runner import main  # noqa: E402

main("clicks", [ClicksService])
