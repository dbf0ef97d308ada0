"""``python -m services.settlement.run_batch``: the settlement batch runner as its own process."""
import eventlet

eventlet.monkey_patch()

from psycogreen.eventlet import patch_psycopg  # noqa: E402

patch_psycopg()

from services.common.runner import main  # noqa: E402
from services.settlement.batch_service import SettlementBatchService  # noqa: E402

if __name__ == "__main__":
    main("settlement_batch", [SettlementBatchService], schema="settlement")
