"""JSON through orjson: list pages render several times faster than with the standard library."""

from __future__ import annotations

import orjson
from rest_framework.renderers import JSONRenderer


class FastJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        indent = self.get_indent(accepted_media_type or "", renderer_context or {})
        if indent:
            return super().render(data, accepted_media_type, renderer_context)
        return orjson.dumps(data, default=_fallback, option=orjson.OPT_NON_STR_KEYS)


def _fallback(value):
    # Lazy translation strings, Decimals and the like: what DRF's encoder would do.
    return str(value)
