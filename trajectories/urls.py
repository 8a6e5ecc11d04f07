from django.urls import path

from trajectories import links  # noqa: F401  (registers the "traj" path converter)

from .pages import (
    actions,
    clusters,
    compare,
    detail,
    exports,
    groups,
    home,
    imports,
    listing,
    monitors,
    questions,
    stats,
)

app_name = "trajectories"

urlpatterns = [
    path("", home.home, name="home"),
    path("trajectories/", listing.trajectory_list, name="list"),
    path("trajectories/actions/", actions.bulk_action, name="actions"),
    path("trajectories/export/", exports.export_download, name="export"),
    path("trajectories/clusters/", clusters.cluster_page, name="clusters"),
    path("trajectories/clusters/annotate/", clusters.cluster_annotate, name="cluster-annotate"),
    path("trajectories/monitors/", monitors.monitor_list, name="monitors"),
    path("trajectories/monitors/run/", monitors.monitor_run, name="monitor-run"),
    path("trajectories/monitors/<int:pk>/toggle/", monitors.monitor_toggle, name="monitor-toggle"),
    path("trajectories/monitors/<int:pk>/delete/", monitors.monitor_delete, name="monitor-delete"),
    path("trajectories/stats/", stats.stats_page, name="stats"),
    path("trajectories/stats/pivot/", stats.pivot_page, name="pivot"),
    path("trajectories/groups/", groups.group_list, name="groups"),
    path("trajectories/group/", groups.group_page, name="group"),
    path("trajectories/compare/", compare.compare_page, name="compare"),
    path("trajectories/questions/changes/", questions.question_changes, name="question-changes"),
    path("trajectories/import/", imports.import_page, name="import"),
    path("trajectories/import/<int:job_id>/", imports.import_job, name="import-job"),
    path("trajectories/import/<int:job_id>/status/", imports.import_job_status, name="import-job-status"),
    path("trajectories/import/<int:job_id>/report/", imports.import_job_report, name="import-job-report"),
    path("trajectories/import/<int:job_id>/resume/", imports.resume_job, name="import-job-resume"),
    path("trajectories/import/<int:job_id>/discard/", imports.discard_job, name="import-job-discard"),
    path("trajectories/<traj:trajectory_id>/steps/", detail.trajectory_steps, name="steps"),
    path("trajectories/<traj:trajectory_id>/steps/<int:index>/raw/", detail.trajectory_step_raw, name="step-raw"),
    path("trajectories/<traj:trajectory_id>/raw/", detail.trajectory_raw, name="raw"),
    path("trajectories/<traj:trajectory_id>/annotate/", detail.trajectory_annotate, name="annotate"),
    path("trajectories/<traj:trajectory_id>/", detail.trajectory_detail, name="detail"),
]
