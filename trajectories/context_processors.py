"""What the admin's base template needs on trajsite's own pages: its header, title and user tools."""

from __future__ import annotations

from django.contrib import admin


def admin_chrome(request) -> dict:
    user = getattr(request, "user", None)
    return {
        "site_header": admin.site.site_header,
        "site_title": admin.site.site_title,
        "has_permission": bool(user and user.is_active and user.is_staff),
        "site_url": None,
    }
