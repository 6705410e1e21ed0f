from integration_kit.migrate import run_env
from tma_impl.tables import Base

run_env(Base.metadata)
