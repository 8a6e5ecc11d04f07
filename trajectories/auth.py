"""The staff user of a request, remembered for a few seconds in each process.

Loading the user through the ORM was a third of a cached page's cost, and the API token's lookup a
query (and a database connection) per API request: ~9% of a busy worker's time. Changes made in this
process (saving or deleting a user or a token, changing permissions) forget them at once; other
processes see them within `USER_SECONDS`. Permissions themselves are still read by Django as usual.
"""

from __future__ import annotations

import time

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import PermissionDenied
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token, TokenProxy

USER_SECONDS = 10.0
DELETE_PERMISSION = "trajectories.delete_trajectory"
_users: dict[int, tuple[User, float]] = {}
_delete_permissions: dict[int, tuple[bool, float]] = {}
_tokens: dict[str, tuple[User, Token, float]] = {}
_MAX_TOKENS = 10_000  # remembered keys: a flood of made-up keys is refused, never remembered


class CachedModelBackend(ModelBackend):
    def get_user(self, user_id):
        remembered = _users.get(user_id)
        if remembered is not None and time.monotonic() - remembered[1] < USER_SECONDS:
            return _fresh_copy(remembered[0])
        user = super().get_user(user_id)
        if user is not None:
            _users[user_id] = (user, time.monotonic())
            return _fresh_copy(user)
        return user


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, a valid key remembered like the user (refused keys never are)."""

    def authenticate_credentials(self, key):
        remembered = _tokens.get(key)
        if remembered is not None and time.monotonic() - remembered[2] < USER_SECONDS:
            return _fresh_copy(remembered[0]), remembered[1]
        user, token = super().authenticate_credentials(key)
        if len(_tokens) >= _MAX_TOKENS:
            _tokens.clear()
        _tokens[key] = (user, token, time.monotonic())
        return _fresh_copy(user), token


def can_delete(user) -> bool:
    """Whether pages offer the delete action (two queries to ask, so remembered like the user).
    Deleting itself always checks the permission afresh."""
    if user.is_superuser:
        return True
    remembered = _delete_permissions.get(user.pk)
    if remembered is not None and time.monotonic() - remembered[1] < USER_SECONDS:
        return remembered[0]
    allowed = user.has_perm(DELETE_PERMISSION)
    _delete_permissions[user.pk] = (allowed, time.monotonic())
    return allowed


def require_delete(user) -> None:
    """Deleting (one trajectory, a bulk delete, an import that replaces stored rows) needs the
    permission, asked afresh; a 403 on pages and API alike."""
    if not user.has_perm(DELETE_PERMISSION):
        raise PermissionDenied("deleting trajectories needs the 'Can delete trajectories' permission")


def _fresh_copy(user: User) -> User:
    # A copy per request: Django caches permissions on the user object, which must not outlive it.
    copy = User(**{field.attname: getattr(user, field.attname) for field in User._meta.concrete_fields})
    copy._state.adding = False
    copy._state.db = user._state.db
    return copy


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def forget_user(sender, instance, **kwargs) -> None:
    _users.pop(instance.pk, None)
    _delete_permissions.pop(instance.pk, None)
    _tokens.clear()


@receiver(post_save, sender=Token)
@receiver(post_delete, sender=Token)
@receiver(post_save, sender=TokenProxy)  # the admin's token pages save and delete through the proxy
@receiver(post_delete, sender=TokenProxy)
def forget_token(sender, instance, **kwargs) -> None:
    _tokens.pop(instance.key, None)


@receiver(m2m_changed, sender=User.user_permissions.through)
@receiver(m2m_changed, sender=User.groups.through)
@receiver(post_save, sender=Group)
@receiver(post_save, sender=Permission)
def forget_users(sender, **kwargs) -> None:
    _users.clear()
    _delete_permissions.clear()
    _tokens.clear()
