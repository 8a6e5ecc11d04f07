"""`trajectories_changed` is sent once by every write path (imports, annotations, deletes, optimize)."""

from django.dispatch import Signal, receiver

from trajectories import cache

trajectories_changed = Signal()


@receiver(trajectories_changed)
def invalidate_cache(sender, **kwargs) -> None:
    cache.bump_generation()
