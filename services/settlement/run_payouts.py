"""``python -m services.settlement.run_payouts``: the payouts worker as its own process."""
import eventlet

eventlet.monkey_patch()

from psycogreen.eventlet import patch_psycopg  # noqa: E402

patch_psycopg()

from services.common.runner import main  # noqa: E402
from services.settlement.payouts import PayoutsService  # noqa: E402

if __name__ == "__main__":
    main("payouts", [PayoutsService], schema="settlement")
