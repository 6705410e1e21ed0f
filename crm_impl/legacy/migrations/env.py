from integration_kit.legacy import run_legacy_env

run_legacy_env()
