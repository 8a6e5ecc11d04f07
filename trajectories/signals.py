"""`trajectories_changed` is sent once by every write path (imports, annotations, deletes, optimize)."""

from django.dispatch import Signal, receiver

from trajectories import cache

trajectories_changed = Signal()


@receiver(trajectories_changed)
def invalidate_cache(sender, annotations_only: bool = False, **kwargs) -> None:
    """Annotation edits (`annotations_only=True`) leave cached answers that do not read the fields
    they changed (see `cache.cached`); any other write makes every cached answer unreachable."""
    if annotations_only:
        cache.bump_edits()
    else:
        cache.bump_generation()
