from crm_impl.cli import run

raise SystemExit(run())
