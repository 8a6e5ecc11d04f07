from django.contrib import admin
from django.urls import include, path

from trajsite import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/", include("trajectories.api.urls")),
    path("api-auth/", include("rest_framework.urls")),
    path("", include("trajectories.urls")),
]
