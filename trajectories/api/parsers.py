"""The API reads JSON only, with orjson: NaN and Infinity are refused, and a body nested deeper than
its limit is a 400, not a RecursionError (a 500) as in the stdlib parser."""

from __future__ import annotations

import orjson
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return orjson.loads(stream.read() if stream is not None else b"")
        except orjson.JSONDecodeError as error:
            raise ParseError(f"JSON parse error - {error}") from error
