"""`q` (words inside the steps) and `regex`, parsed into plain data the store evaluates.

    q=permission denied        both words, anywhere in the trajectory (every word is required)
    q="permission denied"      the phrase: these words one after the other
    q=-timeout  q=+retry        a word that must not / must occur (`+` is the default)
    q=perm*                     a word starting with "perm" (found by scanning: see below)
    q=错误                       Chinese, Japanese and Korean words match inside any text
    regex=Traceback.*KeyError   a regular expression (RE2 syntax) over the steps' text, line by line

Words and phrases are answered by the full-text index. Prefixes and `regex` are checked by reading
the text of the rows everything else leaves (other filters, indexed words), at most `SCAN_LIMIT` of
them per request: past that the answer is an error saying so, never a silently partial list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from trajectories import content

TEXT_VAR = "q"
REGEX_VAR = "regex"
RELEVANCE = "relevance"
MAX_TERMS = 16
SCAN_LIMIT = 50_000
_PIECE = re.compile(r'([+-]?)"([^"]*)"?|(\S+)')


class TextError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class Term:
    """Tokens that must occur one after the other; `prefix`: the last one only starts the word."""

    tokens: tuple[str, ...]
    prefix: bool = False
    text: str = ""  # as typed, CJK characters set apart: what the index is asked (it splits words itself)

    @property
    def indexed(self) -> bool:
        """Answered by the full-text index (else by scanning): the index keeps words under 100 bytes."""
        return not self.prefix and all(len(token.encode()) < content.MAX_TOKEN for token in self.tokens)

    def pattern(self) -> str:
        """The term as an RE2 expression over stored search text (for scanning; case-insensitive)."""
        words = r"[^\pL\pN\pM]+".join(re.escape(token) for token in self.tokens)
        tail = "" if self.prefix else r"(?:[^\pL\pN\pM]|$)"
        return r"(?i)(?:^|[^\pL\pN\pM])" + words + tail

    def label(self) -> str:
        joiner = "" if all(len(token) == 1 and not token.isascii() for token in self.tokens) else " "
        text = joiner.join(self.tokens) + ("*" if self.prefix else "")
        return f'"{text}"' if len(self.tokens) > 1 and joiner else text


@dataclass(frozen=True)
class TextQuery:
    source: str | None = None  # `q` as given: what the search box and links show again
    required: tuple[Term, ...] = ()
    excluded: tuple[Term, ...] = ()
    regex: str | None = None

    @property
    def ranked(self) -> bool:
        """Whether rows get a relevance score (some required term is indexed)."""
        return any(term.indexed for term in self.required)

    def words(self) -> list[str]:
        """Every token a reader would see highlighted."""
        return [token for term in self.required for token in term.tokens]


def parse_text(q: str | None, regex: str | None) -> TextQuery | None:
    required: list[Term] = []
    excluded: list[Term] = []
    for match in _PIECE.finditer(q or ""):
        sign, phrase, word = match.group(1), match.group(2), match.group(3)
        if word is not None:
            sign = word[0] if word[0] in "+-" and len(word) > 1 else ""
            phrase = word[len(sign) :]
        term = _term(phrase)
        if term is None:
            continue
        (excluded if sign == "-" else required).append(term)
    if len(required) + len(excluded) > MAX_TERMS:
        raise TextError(TEXT_VAR, f"at most {MAX_TERMS} words or phrases")
    if excluded and not required and not regex:
        raise TextError(TEXT_VAR, "give a word to look for, not only words to leave out")
    if regex is not None:
        _check_regex(regex)
    if not required and not excluded and not regex:
        return None
    return TextQuery(
        source=q or None,
        required=tuple(dict.fromkeys(required)),
        excluded=tuple(dict.fromkeys(excluded)),
        regex=regex,
    )


def _term(text: str) -> Term | None:
    prefix = text.endswith("*")
    typed = text.rstrip("*")
    tokens = tuple(content.tokens(typed))
    if not tokens:
        return None
    return Term(tokens=tokens, prefix=prefix, text=content.spaced(typed))


MATCH_GROUP = "trajsite_match"


def wrapped(regex: str) -> str:
    """The pattern as scans and highlighting run it: line by line, the match captured."""
    return f"(?m)(?P<{MATCH_GROUP}>{regex})"


def _check_regex(regex: str) -> None:
    """RE2 syntax (the engine that scans: linear time, so no pattern can hang a request)."""
    if not regex:
        raise TextError(REGEX_VAR, "empty")
    if "\\C" in regex:
        raise TextError(REGEX_VAR, "\\C (any byte) can split a character; use . instead")
    try:
        pc.match_substring_regex(pa.array([""]), wrapped(regex))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        reason = str(error).split(":", 1)[-1].strip()
        raise TextError(REGEX_VAR, f"not a regular expression RE2 understands: {reason}") from None


def describe(text: TextQuery | None) -> list[tuple[str, str]]:
    """The (parameter, value) pairs that give back `text`."""
    if text is None:
        return []
    pairs = [(TEXT_VAR, text.source)] if text.source else []
    return pairs + ([(REGEX_VAR, text.regex)] if text.regex else [])
