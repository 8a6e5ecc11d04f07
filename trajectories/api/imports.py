"""`/api/imports/`: a training job posts its dump (multipart `files`, with the import page's fields)
and gets a queued job back; `GET /api/imports/{id}/` follows it from any web server."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from trajectories.importing import uploads
from trajectories.importing.pipeline import COUNTERS
from trajectories.models import ImportJob

_FIELDS = ("id", "status", "outcome", "origin", "created_at", "finished_at", "attempts", "failure", *COUNTERS)


class ImportJobSerializer(serializers.ModelSerializer):
    outcome = serializers.CharField(read_only=True)
    files = serializers.ListField(source="file_names", read_only=True)

    class Meta:
        model = ImportJob
        fields = [*_FIELDS, "files", "bytes_total", "first_errors"]
        read_only_fields = fields


class ImportJobViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAdminUser]
    serializer_class = ImportJobSerializer
    parser_classes = [MultiPartParser]
    lookup_value_converter = "int"  # /api/imports/names/ is a 404, not a lookup of "names"

    def get_queryset(self):
        return ImportJob.objects.all()

    def list(self, request, format=None):
        jobs = self.get_queryset()[:50]
        return Response(self.get_serializer(jobs, many=True).data)

    def retrieve(self, request, pk: int, format=None):
        return Response(self.get_serializer(get_object_or_404(ImportJob, pk=pk)).data)

    @extend_schema(responses={202: ImportJobSerializer})
    def create(self, request, format=None):
        """Queue an upload: `files` (one or more), and optionally `format`, `on_duplicate`,
        `training_id`, `agent_name`, `dry_run`, `mapping` (a mapping file)."""
        files = request.FILES.getlist("files")
        form = request.POST
        mapping, errors = uploads.checked(
            files=files, form=form, mapping_file=request.FILES.get("mapping"), user=request.user
        )
        if errors:
            return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        try:
            job = uploads.queue(files=files, form=form, mapping=mapping, user=request.user, origin=ImportJob.Origin.API)
        except OSError as error:
            detail = f"The upload could not be stored: {error.strerror or error}."
            return Response({"errors": [detail]}, status=status.HTTP_507_INSUFFICIENT_STORAGE)
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)
