from django.conf import settings
from django.db import migrations, models

import django.db.models.deletion

DEFAULTS = [
    {
        "name": "tool-error",
        "description": "A tool error or a traceback in the steps (an environment problem, not the policy's).",
        "query": "regex=Traceback \\(most recent call last\\)|Permission denied|command not found|[A-Za-z]+Error: |权限不足",
    },
    {"name": "no-tool-answer", "description": "A final answer without any tool use.", "query": "tool_call_count_max=0"},
    {
        "name": "rewarded-empty-answer",
        "description": "Reward of 1 or more with an empty final answer: a reward-hacking suspect.",
        "query": "reward_min=1&answered=false",
    },
    {
        "name": "truncated",
        "description": "Step count at its run's maximum: a rollout cut off by the step budget.",
        "query": "",
        "rule": "run_max_steps",
    },
]


def add_defaults(apps, schema_editor):
    Monitor = apps.get_model("trajectories", "Monitor")
    for monitor in DEFAULTS:
        Monitor.objects.get_or_create(name=monitor["name"], defaults={**monitor, "builtin": True, "enabled": False})


class Migration(migrations.Migration):
    dependencies = [
        ("trajectories", "0005_import_job_findings"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Monitor",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.SlugField(help_text="letters, digits, - and _", max_length=60, unique=True)),
                ("description", models.CharField(blank=True, max_length=300)),
                ("query", models.TextField(help_text="list parameters, as in a list URL's query string")),
                (
                    "rule",
                    models.CharField(
                        blank=True,
                        choices=[("", "none"), ("run_max_steps", "step count at its run's maximum")],
                        default="",
                        max_length=32,
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                (
                    "builtin",
                    models.BooleanField(default=False, help_text="shipped with trajsite (switch it on to use it)"),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_run_at", models.DateTimeField(blank=True, null=True)),
                ("last_matched", models.BigIntegerField(default=0, help_text="rows the last evaluation tagged")),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-enabled", "name"]},
        ),
        migrations.RunPython(add_defaults, migrations.RunPython.noop),
    ]
