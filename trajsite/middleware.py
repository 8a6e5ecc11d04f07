"""A Content-Security-Policy for trajsite's own pages: trajectory content is untrusted model output,
so even markup that slipped past escaping could not run a script or load from elsewhere."""

from __future__ import annotations

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PROTECTED = ("/trajectories/",)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path == "/" or request.path.startswith(_PROTECTED):
            response.setdefault("Content-Security-Policy", POLICY)
        return response


class StoreBusyMiddleware:
    """A page write that other writers kept beating for a minute: a 503 that says nothing was changed;
    a question refused while it was answered (`QueryError` past parsing): a 400 that says why, and for
    one spanning more trajectories than the server holds (`ScopeTooLarge`) the same page per run."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.http import HttpResponse

        from trajectories.query import QueryError
        from trajectories.store import ScopeTooLarge, StoreBusy
        from trajectories.store.commits import storage_problem

        if isinstance(exception, StoreBusy):
            text = f"The store is busy with other writers; nothing was changed. Try again. ({exception})"
            response = HttpResponse(text, status=503, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = "5"
            return response
        # Only what the storage layer raises (LanceDB: RuntimeError, OSError): a Django PermissionDenied
        # saying "permission denied" stays the 403 it is.
        problem = storage_problem(exception) if isinstance(exception, (OSError, RuntimeError)) else None
        if problem is not None:
            # A full or read-only disk: say so, and that the change was not made (reads go on).
            text = f"Not saved: {problem}. Nothing was changed; reading still works. ({str(exception)[:200]})"
            response = HttpResponse(text, status=503, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = "60"
            return response
        if isinstance(exception, ScopeTooLarge):
            # A question across training runs past the memory budget: the page names the runs to choose.
            from trajectories.pages.narrowing import choose_a_run

            return choose_a_run(request, exception)
        if isinstance(exception, QueryError):
            # A question found too costly while being answered (a pattern over too many rows): a page
            # says so as the parser's refusals do, never a 500.
            text = f"Bad parameter {exception.parameter}: {exception.message}\n"
            return HttpResponse(text, status=400, content_type="text/plain; charset=utf-8")
        return None


class ReadScopeMiddleware:
    """Each request reads the cache generation and the table versions once (`trajectories.cache`)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        from trajectories.cache import read_scope

        with read_scope():
            return self.get_response(request)


class ServerTimingMiddleware:
    """Says where each request's time went (`Server-Timing: store, cache, render, total`, readable in
    the browser's network panel) and logs the slow ones as structured lines."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        import time

        from django.conf import settings

        from trajectories import timing
        from trajectories.events import log_event

        started = time.perf_counter()
        with timing.measuring() as spent:
            response = self.get_response(request)
        total = (time.perf_counter() - started) * 1000
        store, cache = spent.get(timing.STORE, 0.0) * 1000, spent.get(timing.CACHE, 0.0) * 1000
        render = max(total - store - cache, 0.0)
        response["Server-Timing"] = (
            f"store;dur={store:.1f}, cache;dur={cache:.1f}, render;dur={render:.1f}, total;dur={total:.1f}"
        )
        if total >= settings.TRAJSITE_SLOW_REQUEST_MS:
            log_event(
                "slow_request",
                method=request.method,
                path=request.path[:300],
                query=request.META.get("QUERY_STRING", "")[:500],
                status=response.status_code,
                ms=round(total, 1),
                store_ms=round(store, 1),
                cache_ms=round(cache, 1),
                user=getattr(getattr(request, "user", None), "username", None),
                warning=True,
            )
        return response
