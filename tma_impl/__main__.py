from tma_impl.cli import run

raise SystemExit(run())
