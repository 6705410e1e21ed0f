from crm_impl.tables import Base
from integration_kit.migrate import run_env

run_env(Base.metadata)
