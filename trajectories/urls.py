from django.urls import path

from . import views

app_name = "trajectories"

urlpatterns = [
    path("", views.home, name="home"),
    path("trajectories/", views.trajectory_list, name="list"),
    path("trajectories/<path:trajectory_id>/", views.trajectory_detail, name="detail"),
]
