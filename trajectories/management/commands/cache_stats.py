"""manage.py cache_stats [--clear] — how the Redis cache is doing, and a way to empty it."""

from __future__ import annotations

from django.core.cache import cache as redis_cache
from django.core.management.base import BaseCommand, CommandError

from trajectories import cache


class Command(BaseCommand):
    help = "Show the trajectory cache's hit rate, key count and memory; --clear empties it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--clear", action="store_true", help="delete this site's keys and bump the generation")

    def handle(self, *args, **options) -> None:
        try:
            stats = cache.stats()
        except Exception as error:
            raise CommandError(f"Redis cache unavailable: {error}") from error
        total = stats["hits"] + stats["misses"]
        rate = f"{stats['hits'] / total:.1%}" if total else "n/a"
        self.stdout.write(f"generation: {stats['generation']}")
        self.stdout.write(f"hits: {stats['hits']:,}  misses: {stats['misses']:,}  hit rate: {rate}")
        self.stdout.write(f"keys: {stats['keys']:,} ({stats['entry_bytes']:,} bytes in sampled entries)")
        self.stdout.write(f"redis memory used: {stats['used_memory_human']} (whole server)")
        if options["clear"]:
            removed = redis_cache.delete_pattern("traj:*")
            cache.bump_generation()
            self.stdout.write(f"cleared {removed or 0:,} keys")
