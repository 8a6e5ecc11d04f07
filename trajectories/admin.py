from django.contrib import admin
from django.shortcuts import redirect

from .models import ImportJob, TrajectoryAccess


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "origin", "status", "imported", "duplicates", "rejected", "duration_seconds")
    list_filter = ("status", "origin")
    readonly_fields = [field.name for field in ImportJob._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(TrajectoryAccess)
class TrajectoryAdmin(admin.ModelAdmin):
    """Puts "Trajectories" in the admin index; the list itself is trajsite's page over LanceDB."""

    def changelist_view(self, request, extra_context=None):
        return redirect("trajectories:list")

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


admin.site.site_header = "trajsite"
admin.site.site_title = "trajsite"
admin.site.index_title = "Administration"
