import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from customers.errors import ApplicationError

from . import ops, selectors
from .connections import connection_check
from .forms import ConnectionCreateForm, ConnectionForm, DeadLetterFilterForm
from .webhook_drain import webhook_drain_enqueue
from .webhooks import WebhookInvalid, WebhookRejected, webhook_receive

logger = logging.getLogger(__name__)

ROWS_PER_PAGE = 50


@csrf_exempt
@login_not_required
@require_POST
def webhook(request: HttpRequest, system: str) -> JsonResponse:
    """POST /hooks/<system>/: signed events land first and are processed by a task."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        receipt = webhook_receive(
            system_name=system,
            headers=headers,
            body=request.body,
            remote_addr=request.META.get("REMOTE_ADDR", ""),
        )
    except WebhookRejected as exc:
        return JsonResponse({"error": exc.message}, status=401)
    except WebhookInvalid as exc:
        return JsonResponse({"error": exc.message}, status=400)
    if receipt.record_id is not None and not receipt.duplicate:
        # One drain applies the burst's events in batches (debounced, see webhook_drain).
        system_id = receipt.system_id
        transaction.on_commit(lambda: webhook_drain_enqueue(system_id))
    status = 200 if receipt.duplicate or receipt.record_id is None else 202
    return JsonResponse(
        {
            "event": receipt.event_id,
            "type": receipt.event_type,
            "duplicate": receipt.duplicate,
            "routed": receipt.record_id is not None,
        },
        status=status,
    )


# -- operations pages: systems, sync health, dead letters --------------------------------
# Plain function views: check access, call one selector or service, render. Reads live in
# integrations.selectors, writes in integrations.ops and the services it calls.


def _is_partial(request: HttpRequest) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


def _paginate(request: HttpRequest, rows: QuerySet) -> Page:
    return Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))


def _back(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


def systems(request: HttpRequest) -> HttpResponse:
    selectors.require_perm(request.user, selectors.VIEW_CONNECTION)
    context = {"rows": selectors.system_list()}
    return render(request, "integrations/systems.html", context)


@require_POST
def system_check(request: HttpRequest, pk: int) -> HttpResponse:
    connection = selectors.access_connection(request.user, pk, selectors.CHANGE_CONNECTION)
    system = connection.system
    ok, message = connection_check(connection=connection)
    if not _is_partial(request):
        messages.add_message(request, messages.SUCCESS if ok else messages.ERROR, message)
        return redirect(f"{reverse('integrations:systems')}#system-{system.pk}")
    connection.refresh_from_db()
    context = {"row": selectors.SystemRow(system, connection)}
    return render(request, "integrations/systems.html#check", context)


@require_POST
def system_sync(request: HttpRequest, pk: int) -> HttpResponse:
    connection = selectors.access_connection(request.user, pk, selectors.CHANGE_CONNECTION)
    system = connection.system
    stream, full = request.POST.get("stream", ""), request.POST.get("full") == "1"
    try:
        queued = ops.connection_sync_enqueue(
            connection=connection, streams=[stream] if stream else None, full=full
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        what = "Full resync" if full else "Sync"
        messages.success(request, f"{what} of {system} queued: {', '.join(queued)}.")
    return redirect(f"{reverse('integrations:systems')}#system-{system.pk}")


def system_edit(request: HttpRequest, pk: int) -> HttpResponse:
    system = selectors.access_system(request.user, pk, selectors.CHANGE_CONNECTION)
    connection = getattr(system, "connection", None)
    if connection is None:
        return redirect(f"{reverse('integrations:system_new')}?name={system.name}")
    secrets = selectors.connection_secrets(connection=connection)
    form = ConnectionForm(
        request.POST or None, connection=connection, names=secrets.names, masked=secrets.masked
    )
    if request.method == "POST" and form.is_valid():
        try:
            ops.connection_settings_update(
                connection=connection,
                values=form.settings(),
                new_credentials=form.new_credentials(),
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{system} saved.")
            return redirect(f"{reverse('integrations:systems')}#system-{system.pk}")
    context = {"form": form, "system": system, "connection": connection, "secrets": secrets}
    return render(request, "integrations/system_form.html", context)


def system_new(request: HttpRequest) -> HttpResponse:
    selectors.require_perm(request.user, selectors.ADD_CONNECTION)
    presets = selectors.preset_catalog()
    initial = {"name": request.GET.get("name", ""), "preset": request.GET.get("preset")}
    form = ConnectionCreateForm(request.POST or None, presets=presets, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            connection = ops.connection_create(
                system_name=data["name"],
                kind=data["kind"] or None,
                preset=data["preset"],
                base_url=data["base_url"],
                credentials=form.new_credentials(),
                enabled=data["enabled"],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{connection.system} connected. Test the connection next.")
            return redirect(f"{reverse('integrations:systems')}#system-{connection.system_id}")
    template_name = "integrations/system_form.html"
    if _is_partial(request) and request.method == "GET":
        template_name += "#preset-fields"
    context = {"form": form, "presets": presets, "creating": True}
    return render(request, template_name, context)


def sync_health(request: HttpRequest) -> HttpResponse:
    selectors.require_perm(request.user, selectors.VIEW_SYNCRUN)
    context = {"health": selectors.sync_health()}
    return render(request, "integrations/health.html", context)


def dead_letters(request: HttpRequest) -> HttpResponse:
    selectors.require_perm(request.user, selectors.VIEW_RECORD)
    show = "outbox" if request.GET.get("show") == "outbox" else "records"
    if show == "outbox":
        selectors.require_perm(request.user, selectors.VIEW_OUTBOX)
    form = DeadLetterFilterForm(request.GET, systems=selectors.system_choices())
    filters = form.filters()
    lists = {
        "records": selectors.dead_record_list(**filters),
        "outbox": selectors.dead_outbox_list(**filters),
    }
    page = _paginate(request, lists[show])
    other = "records" if show == "outbox" else "outbox"
    counts = {show: page.paginator.count, other: lists[other].count()}
    context = {"form": form, "show": show, "page": page, "counts": counts}
    template_name = "integrations/dead_letters.html"
    if _is_partial(request):
        template_name += "#results"
    response = render(request, template_name, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
def dead_letters_replay(request: HttpRequest) -> HttpResponse:
    selectors.require_perm(request.user, selectors.VIEW_RECORD)
    selectors.require_perm(request.user, selectors.CHANGE_RECORD)
    if request.POST.get("all") == "1":
        form = DeadLetterFilterForm(request.POST, systems=selectors.system_choices())
        ids = selectors.dead_record_ids(**form.filters())
    else:
        ids = _ids(request.POST.getlist("one") or request.POST.getlist("ids"))
    if not ids:
        messages.error(request, "Select the records to replay first.")
    else:
        _replay_message(request, ops.records_replay_request(record_ids=ids))
    return redirect(_back(request, reverse("integrations:dead_letters")))


@require_POST
def outbox_retry(request: HttpRequest) -> HttpResponse:
    selectors.require_perm(request.user, selectors.VIEW_OUTBOX)
    selectors.require_perm(request.user, selectors.CHANGE_OUTBOX)
    ids = _ids(request.POST.getlist("one") or request.POST.getlist("ids"))
    count = ops.outbox_messages_retry(message_ids=ids)
    if count:
        messages.success(request, f"{count} message{pluralize(count)} queued to send again.")
    else:
        messages.error(request, "Select dead messages to retry first.")
    default = f"{reverse('integrations:dead_letters')}?show=outbox"
    return redirect(_back(request, default))


def record_detail(request: HttpRequest, pk: int) -> HttpResponse:
    record = selectors.access_record(request.user, pk)
    context = {"detail": selectors.record_detail(record=record)}
    return render(request, "integrations/record_detail.html", context)


@require_POST
def record_replay(request: HttpRequest, pk: int) -> HttpResponse:
    record = selectors.access_record(request.user, pk, selectors.CHANGE_RECORD)
    _replay_message(request, ops.records_replay_request(record_ids=[record.pk]))
    return redirect("integrations:record", record.pk)


def _ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()]


def _replay_message(request: HttpRequest, result: ops.ReplayResult) -> None:
    summary = result.summary
    counts = summary.counts
    applied = counts["created"] + counts["updated"]
    parts = [f"{applied} applied"]
    parts += [f"{counts[o]} {o}" for o in ("unchanged", "stale") if counts[o]]
    if counts["failed"]:
        parts.append(f"{counts['failed']} still failing")
    text = f"Replayed {summary.read} record{pluralize(summary.read)}: {', '.join(parts)}."
    if summary.read == 0:
        text = "Nothing to replay: the records were already processed."
    if result.queued:
        batches = f"{result.batches} batch{pluralize(result.batches, 'es')}"
        text += f" {result.queued} more queued in {batches}."
    level = messages.ERROR if counts["failed"] and not applied else messages.SUCCESS
    if counts["failed"] and summary.problems:
        text += f" First error: {summary.problems[0].message}"
    messages.add_message(request, level, text)
