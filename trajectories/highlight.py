"""Where a content search matched: the pattern that marks its words, and snippets around the first match.

Pure text work shared by the list (a snippet under each row) and the trajectory page (which steps
match). Only literal tokens run under Python's regular expressions; a user's `regex` runs under RE2
(linear time) and what it matched is then marked as a literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from trajectories.textquery import MATCH_GROUP, Term, TextQuery, wrapped

SNIPPET_CHARACTERS = 160


@dataclass(frozen=True)
class Snippet:
    """A piece of a trajectory's text around its first match: (text, is_match) parts, unescaped."""

    parts: tuple[tuple[str, bool], ...]
    clipped_start: bool
    clipped_end: bool

    def as_json(self) -> dict:
        return {"parts": [{"text": text, "match": match} for text, match in self.parts]}


def highlighter(text: TextQuery, visible: str = "") -> re.Pattern | None:
    """One pattern for what `text` matched in `visible`: its words as literal tokens, and the text
    `regex` matched there as a literal (a user's pattern never runs under a backtracking engine)."""
    pieces = [_literal(term) for term in text.required]
    if text.regex and visible:
        try:
            found = pc.extract_regex(pa.array([visible]), wrapped(text.regex))[0]
            matched = found[MATCH_GROUP].as_py() if found.is_valid else None
        except (pa.ArrowException, KeyError, UnicodeDecodeError):
            matched = None  # e.g. unnamed groups, which extraction refuses: the row matched, unmarked
        if matched:
            pieces.insert(0, re.escape(matched))
    return re.compile("|".join(pieces), re.IGNORECASE) if pieces else None


def _literal(term: Term) -> str:
    if not term.tokens[0].isascii():
        return r"[\W_]*".join(re.escape(token) for token in term.tokens)
    words = r"[\W_]+".join(re.escape(token) for token in term.tokens)
    return r"(?<![^\W_])" + words + ("" if term.prefix else r"(?![^\W_])")


def snippet(visible: str, finder: re.Pattern | None) -> Snippet | None:
    """The text around the first match, every match in it marked."""
    first = finder.search(visible) if finder is not None and visible else None
    if first is None:
        return None
    start = max(0, first.start() - SNIPPET_CHARACTERS // 3)
    stop = min(len(visible), start + max(SNIPPET_CHARACTERS, min(first.end() - start, 3 * SNIPPET_CHARACTERS)))
    window = visible[start:stop]
    parts: list[tuple[str, bool]] = []
    at = 0
    for match in finder.finditer(window):
        if match.start() == match.end():
            continue
        if match.start() > at:
            parts.append((_flat(window[at : match.start()]), False))
        parts.append((match.group(), True))
        at = match.end()
    if at < len(window):
        parts.append((_flat(window[at:]), False))
    return Snippet(parts=tuple(parts), clipped_start=start > 0, clipped_end=stop < len(visible))


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)
