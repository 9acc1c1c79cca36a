"""Tests of paretoalign.data.transcripts: HH-RLHF transcripts as chat messages and cut into prompt and response."""

from __future__ import annotations

from paretoalign.data.transcripts import split_transcript, transcript_messages


def test_transcript_messages():
    assert transcript_messages("Human: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}
    ]
    assert transcript_messages("plain") == [{"role": "user", "content": "plain"}]


def test_split_transcript_cuts_after_the_last_assistant_turn():
    transcript = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: See you."
    assert split_transcript(transcript) == (
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:", " See you."
    )
    assert split_transcript("\n\nHuman: hi\n\nAssistant:") == ("\n\nHuman: hi\n\nAssistant:", "")
    assert split_transcript("\n\nHuman: no reply") is None
