import eventlet

eventlet.monkey_patch()

from psycogreen.eventlet import patch_psycopg  # noqa: E402

patch_psycopg()

from services.common.runner import main  # noqa: E402
from services.settlement.service import SettlementService  # noqa: E402

main("settlement", [SettlementService])
