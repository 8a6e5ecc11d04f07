"""The text inside a trajectory that `q` searches, split into words the way the full-text index splits it.

One translation, used by the importer (the stored `search_text`), the query parser (a `q` word
becomes the same tokens) and the trajectory page (which steps match). The index's tokenizer breaks
text at every character that is not a letter or digit and lowercases it; Chinese, Japanese and
Korean text has no spaces between words, so a zero-width space is put between such characters (and
between them and a neighbouring letter): every one is then a token, and a word like 错误 is found as
the phrase 错 误 wherever it sits, inside an English log line too. The zero-width space is invisible
and removed again for display.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson

SEPARATOR = "\u200b"
# A trajectory's searchable text is cut here: a megabyte of observations is searched, not a gigabyte.
MAX_TEXT = 1_000_000
# Longer tokens are not indexed (hashes, base64); a `q` word this long is looked for by scanning.
MAX_TOKEN = 100
_WIDE = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff"
)
_BETWEEN = re.compile(rf"(?<=[{_WIDE}])(?=[^\W_])|(?<=[^\W_])(?=[{_WIDE}])")


def spaced(text: str) -> str:
    """`text` with a separator around every CJK character that touches a letter or digit."""
    return _BETWEEN.sub(SEPARATOR, text) if _has_wide(text) else text


def _has_wide(text: str) -> bool:
    return not text.isascii() and re.search(f"[{_WIDE}]", text) is not None


def shown(text: str) -> str:
    """Stored search text as the user wrote it."""
    return text.replace(SEPARATOR, "")


def tokens(text: str) -> list[str]:
    """Words of `text` in order, lowercased, CJK characters one by one: runs of letters, digits and
    combining marks (a Hindi or Arabic word keeps its vowel signs). For queries and scans; the index
    splits text itself (a `q` word is handed to it as typed)."""
    found, word = [], []
    for character in spaced(text):
        if unicodedata.category(character)[0] in "LNM":
            word.append(character)
        elif word:
            found.append("".join(word).lower())
            word = []
    if word:
        found.append("".join(word).lower())
    return found


def step_text(step: Any) -> str:
    """One step's searchable text: message text, tool names and arguments, tool results, errors."""
    if type(step) is not dict:
        return _text(step)
    parts = [_text(step.get("content"))]
    if type(step.get("name")) is str:
        parts.append(step["name"])
    for call in step.get("tool_calls") or ():
        if type(call) is dict:
            parts.append(_text(call.get("name")))
            parts.append(_text(call.get("arguments")))
    if step.get("error"):
        parts.append(_text(step["error"]))
    return "\n".join(part for part in parts if part)


def searchable(steps: list[Any], final_answer: str | None) -> str:
    """The stored `search_text`: every step's text, then the final answer when no step holds it."""
    texts = [step_text(step) for step in steps]
    if final_answer and not any(final_answer in text for text in texts[-3:]):
        texts.append(final_answer)
    return spaced("\n".join(text for text in texts if text)[:MAX_TEXT])


def _text(value: Any) -> str:
    """Text of a value as a reader sees it: strings as they are, blocks and arguments by their values."""
    if value is None:
        return ""
    if type(value) is str:
        return value
    if type(value) is list:
        return "\n".join(filter(None, (_text(item) for item in value)))
    if type(value) is dict:
        block = value.get("type")
        if block in ("text", "thinking"):
            return _text(value.get("text") if "text" in value else value.get("thinking"))
        if block == "tool_use":
            return "\n".join(filter(None, (_text(value.get("name")), _text(value.get("input")))))
        if block == "tool_result":
            return _text(value.get("content"))
        return "\n".join(filter(None, (_text(item) for item in value.values())))
    if isinstance(value, bool | int | float):
        return orjson.dumps(value).decode()
    return str(value)
