from services.common.migrate import run_env
from services.clicks.models import Base

run_env(Base.metadata)
