r"""Anthropic HH-RLHF transcripts: ``"\n\nHuman: ...\n\nAssistant: ..."`` strings, as chat messages and split into
prompt and response.

Bai et al., "Training a Helpful and Harmless Assistant with Reinforcement Learning from Human Feedback" (arXiv
2204.05862) store each conversation as one string of alternating ``Human:`` and ``Assistant:`` turns, the final
assistant turn being the response compared. :func:`split_transcript` cuts such a string as the DPO paper's HH
script does (Rafailov et al., arXiv 2305.18290): the prompt is the text up to and including the last
``"\n\nAssistant:"``, the response the rest; :func:`transcript_messages` turns a prompt into chat messages.
"""

from __future__ import annotations

import re

__all__ = ["ASSISTANT_TURN", "split_transcript", "transcript_messages"]

ASSISTANT_TURN = "\n\nAssistant:"
"""The marker that opens an assistant turn of a transcript."""

_TRANSCRIPT_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def transcript_messages(prompt: str) -> list[dict[str, str]]:
    """A ``Human: ... Assistant:`` transcript (Anthropic HH-RLHF) as chat messages; other text is one user turn.

    The trailing empty ``Assistant:`` turn, which asks for the reply, is dropped.
    """
    text = prompt.strip()
    if not text.startswith("Human:"):
        return [{"role": "user", "content": prompt}]
    parts = _TRANSCRIPT_TURN.split(text)
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def split_transcript(transcript: str) -> tuple[str, str] | None:
    r"""``(prompt, response)`` of a full transcript: ``prompt = transcript[: i + len(ASSISTANT_TURN)]`` and
    ``response = transcript[i + len(ASSISTANT_TURN) :]`` where ``i`` is the last occurrence of
    ``"\n\nAssistant:"``; ``None`` when the marker does not occur."""
    index = transcript.rfind(ASSISTANT_TURN)
    if index < 0:
        return None
    cut = index + len(ASSISTANT_TURN)
    return transcript[:cut], transcript[cut:]
