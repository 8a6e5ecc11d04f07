"""manage.py import_undo JOB_ID [--yes] — remove exactly the trajectories an import added."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from trajectories.models import ImportJob
from trajectories.signals import trajectories_changed
from trajectories.store import get_store

_DONE = (
    ImportJob.Status.SUCCEEDED,
    ImportJob.Status.PARTIAL,
    ImportJob.Status.FAILED,
    ImportJob.Status.INTERRUPTED,
    ImportJob.Status.DISCARDED,
    ImportJob.Status.UNDONE,
)


class Command(BaseCommand):
    help = (
        "Delete the trajectories an import stored (and their annotations). Says how many first; --yes does it. "
        "An import that replaced stored trajectories ('update') cannot be undone this way: restore a snapshot."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id", type=int)
        parser.add_argument("--yes", action="store_true", help="delete (without it, only say what would go)")

    def handle(self, *args, **options) -> None:
        job = ImportJob.objects.filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"no import #{options['job_id']}")
        if job.status not in _DONE:
            raise CommandError(f"import #{job.pk} is {job.get_status_display()}: stop it or let it finish first")
        if job.updated:
            raise CommandError(
                f"import #{job.pk} replaced {job.updated:,} stored trajectories: deleting them would lose the "
                "versions they replaced. Restore a snapshot from before it instead (store_restore)."
            )
        store = get_store()
        ids = store.imported_ids(import_id=str(job.pk))
        edited = store.edited_count(trajectory_ids=ids)
        files = ", ".join(job.file_names) or "no files"
        self.stdout.write(
            f"import #{job.pk} ({files}, {job.created_at:%Y-%m-%d %H:%M}) stored {len(ids):,} trajectories now "
            f"in the store; {edited:,} of them annotated by someone since (those edits go too)"
        )
        if not options["yes"]:
            self.stdout.write("nothing changed: run again with --yes to delete them")
            return
        # Marked first: a resume racing this undo finds the job no longer resumable.
        marked = ImportJob.objects.filter(pk=job.pk, status=job.status).update(status=ImportJob.Status.UNDONE)
        if not marked:
            raise CommandError(f"import #{job.pk} changed meanwhile (resumed?); nothing deleted, run again")
        removed = store.undo_import(import_id=str(job.pk))
        trajectories_changed.send(sender=self.__class__)
        self.stdout.write(f"import #{job.pk} undone: {removed:,} trajectories removed")
