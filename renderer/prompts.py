"""What a style prompt may be, wherever one comes from: the command line (`--style`) or the control page
(/api/style). Standard library only, so the `restyler` command checks its arguments without loading anything."""

from __future__ import annotations

MAX_PROMPT_CHARS = 200
EXAMPLE = "snowy winter village"


def clean_prompt(text: str) -> str:
    """`text` with its runs of whitespace made single spaces; ValueError when nothing printable is left or it is
    longer than MAX_PROMPT_CHARS. The message says what a prompt is."""
    prompt = " ".join(str(text).split())
    if not prompt or len(prompt) > MAX_PROMPT_CHARS or not prompt.isprintable():
        raise ValueError(f"a style prompt: printable words, at most {MAX_PROMPT_CHARS} characters, e.g. "
                         f"'{EXAMPLE}'; got {text!r}")
    return prompt
