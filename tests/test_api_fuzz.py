"""Schemathesis fuzzes every operation of the OpenAPI schema against the real app and store: no 500s."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 60


@pytest.fixture
def token(store, record, write_jsonl, run_import, django_user_model):
    run_import(write_jsonl([record(trajectory_id=f"t{i}", reward=i / 4) for i in range(8)]))
    user = django_user_model.objects.create_superuser(username="fuzz", password="pw-fuzz-123")
    return Token.objects.create(user=user).key


@pytest.fixture
def api_schema(token):
    from trajsite.wsgi import application

    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", application, headers={"Authorization": f"Token {token}"}
    )


def test_no_operation_answers_500(api_schema, token):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:
        _fuzz(operation, token)


def _fuzz(operation, token: str) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=[not_a_server_error])

    check()
