from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from trajectories import links  # noqa: F401  (registers the "traj" path converter)

from .analytics import GroupViewSet, QuestionChangeViewSet, StatsViewSet
from .imports import ImportJobViewSet
from .viewsets import TrajectoryViewSet

app_name = "api"

router = DefaultRouter(use_regex_path=False)
router.register("trajectories", TrajectoryViewSet, basename="trajectory")
router.register("imports", ImportJobViewSet, basename="import")
router.register("stats", StatsViewSet, basename="stats")
router.register("groups", GroupViewSet, basename="group")
router.register("questions/changes", QuestionChangeViewSet, basename="question-change")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("", include(router.urls)),
]
