"""The per-process user memory: fewer queries per request, and changes made here apply at once."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from trajectories import auth

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def forget():
    auth._users.clear()
    auth._delete_permissions.clear()
    auth._tokens.clear()


def test_second_request_loads_no_user(client, django_user_model, store, django_assert_num_queries):
    user = django_user_model.objects.create_user(username="s", password="pw-s-12345", is_staff=True)
    client.force_login(user)
    client.get("/trajectories/")
    with django_assert_num_queries(0):
        assert client.get("/trajectories/").status_code == 200


def test_deactivating_a_user_applies_at_once(client, django_user_model, store):
    user = django_user_model.objects.create_user(username="s", password="pw-s-12345", is_staff=True)
    client.force_login(user)
    assert client.get("/trajectories/").status_code == 200
    user.is_staff = False
    user.save()
    assert client.get("/trajectories/").status_code == 302


def test_granting_the_delete_permission_shows_the_action_at_once(
    client, django_user_model, store, record, write_jsonl, run_import
):
    run_import(write_jsonl([record()]))
    user = django_user_model.objects.create_user(username="s", password="pw-s-12345", is_staff=True)
    client.force_login(user)
    assert 'value="delete"' not in client.get("/trajectories/").content.decode()
    user.user_permissions.add(Permission.objects.get(codename="delete_trajectory"))
    assert 'value="delete"' in client.get("/trajectories/").content.decode()


# A refused API request is a 403 here, not a 401: DRF asks sessions first, which name no challenge.


def _token_client(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    token = Token.objects.create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api, token


@pytest.mark.parametrize("through", ["Token", "TokenProxy"])  # the admin's token pages use the proxy
def test_an_api_token_is_looked_up_once_and_revoking_it_applies_at_once(
    django_user_model, store, django_assert_num_queries, through
):
    from rest_framework.authtoken import models

    user = django_user_model.objects.create_user(username="api", password="pw-a-12345", is_staff=True)
    api, token = _token_client(user)
    assert api.get("/api/trajectories/").status_code == 200
    with django_assert_num_queries(0):
        assert api.get("/api/trajectories/").status_code == 200
    getattr(models, through).objects.filter(key=token.key).delete()
    assert api.get("/api/trajectories/").status_code == 403


def test_a_refused_token_is_not_remembered_and_deactivation_applies_at_once(django_user_model, store):
    user = django_user_model.objects.create_user(username="api", password="pw-a-12345", is_staff=True)
    api, _ = _token_client(user)
    stranger = __import__("rest_framework.test", fromlist=["APIClient"]).APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert stranger.get("/api/trajectories/").status_code == 403
    assert "0" * 40 not in auth._tokens
    assert api.get("/api/trajectories/").status_code == 200
    user.is_active = False
    user.save()
    assert api.get("/api/trajectories/").status_code == 403
