"""A live pod is diagnosed one way: `bot.alerts.investigate.diagnose_pod`.

The pipeline, `/imagepull diagnose`, the CLI and the demo each used to read the pod, ask the
registry and diagnose on their own; this keeps a fifth copy from growing back.
"""

from __future__ import annotations

import re
from pathlib import Path

BOT = Path(__file__).resolve().parents[2] / "bot"


def test_only_diagnose_pod_reads_a_pods_facts() -> None:
    readers = sorted(str(path.relative_to(BOT)) for path in BOT.rglob("*.py")
                     if re.search(r"\.pod_facts\(", path.read_text(encoding="utf-8")))
    assert readers == ["alerts/investigate.py"]
