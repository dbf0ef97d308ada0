from services.common.migrate import run_env
from services.settlement.models import Base

run_env(Base.metadata)
