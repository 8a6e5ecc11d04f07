"""`trajectories_changed` is sent once by every write path (imports, annotations, deletes, optimize)."""

from django.dispatch import Signal

trajectories_changed = Signal()
