"""The serving processes' garbage-collector settings (see integration_kit/gc_tuning.py)."""

from __future__ import annotations

import gc
import subprocess
import sys

from integration_kit import gc_tuning


def test_serving_freezes_start_up_objects_and_collects_the_young_less_often() -> None:
    # In a fresh interpreter: the settings are process-wide, and the test process keeps its own.
    script = (
        "import gc, integration_kit.app\n"
        "from integration_kit.gc_tuning import tune_for_serving\n"
        "before = gc.get_threshold()\n"
        "tune_for_serving()\n"
        "print(gc.get_freeze_count(), *before, *gc.get_threshold())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    frozen, before, after = int(out[0]), out[1:4], out[4:7]
    assert frozen > 10_000  # the imported framework, out of every future collection
    assert int(after[0]) == gc_tuning.YOUNG_COLLECTION_EVERY > int(before[0])
    assert after[1:] == before[1:]  # older generations as CPython has them
    assert gc.get_freeze_count() == 0  # and this process untouched
