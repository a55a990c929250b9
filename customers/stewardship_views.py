"""The data steward's pages: the duplicates queue, the side-by-side merge (of a queued
candidate or of any two customers), undoing a merge, the field-ownership matrix, and the
matcher's thresholds with the suggestions learned from the stewards' decisions.

Plain function views: check access, call one selector or service, render. Reads live in
``customers.stewardship_selectors``; writes in ``customers.services`` (merge, candidates,
stewardship). A refused write (ApplicationError) comes back as a message on the page the
steward was on, with what they had chosen still chosen.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from customers import stewardship_selectors as sel
from customers.errors import ApplicationError
from customers.forms import (
    BulkApproveForm,
    MergeForm,
    OwnershipAddForm,
    OwnershipForm,
    PairForm,
    QueueFilterForm,
    owner_value,
)
from customers.models import Customer, MatchCandidate, MatchSettings, SourceSystem
from customers.permissions import access_customer
from customers.services.candidates import candidate_decide, candidates_bulk_approve
from customers.services.merge import customer_fields, customer_merge, customer_unmerge
from customers.services.stewardship import (
    field_ownership_create,
    field_ownership_update,
    match_settings_update,
    pair_reject,
)
from customers.stewardship_forms import ApplySuggestionForm, MatchSettingsForm

CANDIDATES_PER_PAGE = 50
BULK_PREVIEW_ROWS = 20
BULK_LIMIT = 500  # candidates_bulk_approve's default: one request merges at most this many


def _is_partial(request: HttpRequest) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


def _next(request: HttpRequest, default: str) -> str:
    """Where to go after a decision: the queue page the steward came from, if local."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


# --- the duplicates queue ----------------------------------------------------------------


def duplicates(request: HttpRequest) -> HttpResponse:
    sel.require_perm(request.user, sel.VIEW_CANDIDATE)
    form = QueueFilterForm(request.GET, systems=sel.system_choices())
    filters = form.filters()
    page = Paginator(sel.candidate_queue(filters=filters), CANDIDATES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    sel.decorate_queue_page(page.object_list)
    context: dict[str, Any] = {
        "form": form,
        "filters": filters,
        "page": page,
        "nav": "duplicates",
    }
    template_name = "customers/stewardship/duplicates.html"
    if _is_partial(request):
        template_name += "#results"
    else:
        bulk = BulkApproveForm()
        context["labels"] = sel.steward_labels(bulk_threshold=0.99)
        context["thresholds"] = sel.match_settings()
        context["bulk_form"] = bulk
        context["pair_form"] = PairForm()
    response = render(request, template_name, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
def duplicates_bulk_approve(request: HttpRequest) -> HttpResponse:
    """First POST: how many pending pairs would be merged, and the best of them. Second
    POST (``confirm``): merge them."""
    sel.require_perm(request.user, sel.VIEW_CANDIDATE)
    sel.require_perm(request.user, sel.CHANGE_CANDIDATE)
    form = BulkApproveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a score between 50 and 100%.")
        return redirect("customers:duplicates")
    threshold = form.min_probability
    if not form.cleaned_data["confirm"]:
        would = sel.pending_above(threshold)
        sample = list(would[:BULK_PREVIEW_ROWS])
        for candidate in sample:
            candidate.percent = candidate.probability * 100
        context = {
            "form": form,
            "count": would.count(),
            "sample": sample,
            "limit": BULK_LIMIT,
            "nav": "duplicates",
        }
        return render(request, "customers/stewardship/bulk_confirm.html", context)
    expected = sel.pending_above(threshold).count()
    merged = candidates_bulk_approve(user=request.user, min_probability=threshold, limit=BULK_LIMIT)
    score = sel.percent_text(threshold)
    if merged:
        text = f"Merged {merged} pair{pluralize(merged)} scoring {score} or more."
        skipped = min(expected, BULK_LIMIT) - merged
        if skipped > 0:
            text += (
                f" {skipped} skipped: decided meanwhile, marked as not the same, or one "
                "customer was merged by an earlier pair."
            )
        if expected > BULK_LIMIT:
            text += f" {expected - BULK_LIMIT} more are left: approve again to continue."
        messages.success(request, text)
    elif expected:
        messages.error(
            request,
            f"Nothing merged: all {expected} pairs scoring {score} or more were refused "
            "(decided meanwhile, marked as not the same, or no longer active).",
        )
    else:
        messages.error(request, f"Nothing merged: no pending pair scores {score} or more.")
    return redirect("customers:duplicates")


# --- the side-by-side merge --------------------------------------------------------------


def _merge_form(pair: list[Customer], data: Any = None) -> MergeForm:
    return MergeForm(data, pair=pair, field_names=customer_fields())


def _merge_page(
    request: HttpRequest,
    *,
    pair: list[Customer],
    candidate: MatchCandidate | None,
    form: MergeForm | None = None,
) -> HttpResponse:
    wanted = None
    choices = None
    if form is not None and form.is_valid():
        wanted = form.cleaned_data["survivor"]
    elif request.GET.get("survivor", "").isdigit():
        wanted = int(request.GET["survivor"])
    survivor, merged = sel.default_survivor(pair[0], pair[1], wanted)
    if form is not None and form.is_valid():
        choices = form.field_choices()
    comparison = sel.merge_comparison(
        survivor=survivor, merged=merged, candidate=candidate, choices=choices
    )
    context = {
        "cmp": comparison,
        "candidate": candidate,
        "next": _next(request, ""),
        "reason": form.cleaned_data.get("reason", "") if form and form.is_valid() else "",
        "nav": "duplicates",
    }
    return render(request, "customers/stewardship/merge.html", context)


def _preview(
    request: HttpRequest, pair: list[Customer], candidate: MatchCandidate | None
) -> HttpResponse:
    """The merged golden record with the chosen radios, in memory: nothing is written."""
    form = _merge_form(pair, request.POST)
    if not form.is_valid():
        return HttpResponse("Choose the surviving customer first.", status=400)
    survivor, merged = sel.default_survivor(pair[0], pair[1], form.cleaned_data["survivor"])
    comparison = sel.merge_comparison(
        survivor=survivor, merged=merged, candidate=candidate, choices=form.field_choices()
    )
    template_name = "customers/stewardship/merge.html"
    if _is_partial(request):
        template_name += "#golden"
    context = {"cmp": comparison, "candidate": candidate, "previewed": True, "nav": "duplicates"}
    return render(request, template_name, context)


@require_GET
def candidate_detail(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = sel.access_candidate(request.user, pk)
    return _merge_page(request, pair=[candidate.low, candidate.high], candidate=candidate)


@require_POST
def candidate_preview(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = sel.access_candidate(request.user, pk)
    return _preview(request, [candidate.low, candidate.high], candidate)


@require_POST
def candidate_decision(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = sel.access_candidate(request.user, pk, sel.CHANGE_CANDIDATE)
    pair = [candidate.low, candidate.high]
    form = _merge_form(pair, request.POST)
    if not form.is_valid() or not form.cleaned_data["decision"]:
        messages.error(request, "Choose the surviving customer and a decision.")
        return _merge_page(request, pair=pair, candidate=candidate, form=form)
    decision = form.cleaned_data["decision"]
    survivor_id = form.cleaned_data["survivor"]
    try:
        decided = candidate_decide(
            candidate_id=candidate.pk,
            user=request.user,
            decision=decision,
            field_choices=form.field_choices() if decision == "merge" else None,
            survivor_id=survivor_id,
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        candidate.refresh_from_db()
        return _merge_page(request, pair=pair, candidate=candidate, form=form)
    queue = _next(request, reverse("customers:duplicates"))
    if decision == "merge":
        return _merged(request, survivor_id, pair)
    if decided.status == MatchCandidate.Status.REJECTED:
        messages.success(
            request,
            f"“{candidate.low}” and “{candidate.high}” are marked as not the same customer; "
            "they will not be suggested again.",
        )
    else:
        messages.success(request, f"Deferred “{candidate.low}” and “{candidate.high}”.")
    return redirect(queue)


def _merged(request: HttpRequest, survivor_id: int, pair: list[Customer]) -> HttpResponse:
    survivor = next(c for c in pair if c.pk == survivor_id)
    merged = next(c for c in pair if c.pk != survivor_id)
    messages.success(
        request,
        f"Merged “{merged}” (#{merged.pk}) into “{survivor}”. The merge history below can undo it.",
    )
    return redirect("customers:detail", survivor_id)


def _pair_ids(data: Any) -> tuple[int, int] | None:
    form = PairForm(data)
    if not form.is_valid():
        return None
    return form.cleaned_data["a"], form.cleaned_data["b"]


@require_GET
def pair_detail(request: HttpRequest) -> HttpResponse:
    """The side-by-side page for any two customers (``?a=<id>&b=<id>``)."""
    sel.require_perm(request.user, sel.VIEW_CANDIDATE)
    ids = _pair_ids(request.GET)
    if ids is None:
        form = PairForm(request.GET or None)
        return render(
            request,
            "customers/stewardship/pick_pair.html",
            {"pair_form": form, "nav": "duplicates"},
            status=400 if request.GET else 200,
        )
    pair = sel.access_pair(request.user, *ids)
    queued = sel.open_candidate_for(*ids)
    if queued is not None:
        # The matcher already queued this pair: decide it there, with its evidence.
        return redirect("customers:candidate", queued.pk)
    return _merge_page(request, pair=pair, candidate=None)


@require_POST
def pair_preview(request: HttpRequest) -> HttpResponse:
    sel.require_perm(request.user, sel.VIEW_CANDIDATE)
    ids = _pair_ids(request.POST)
    if ids is None:
        return HttpResponse("Choose two different customers.", status=400)
    return _preview(request, sel.access_pair(request.user, *ids), None)


@require_POST
def pair_decision(request: HttpRequest) -> HttpResponse:
    sel.require_perm(request.user, sel.VIEW_CANDIDATE)
    ids = _pair_ids(request.POST)
    if ids is None:
        messages.error(request, "Choose two different customers.")
        return redirect("customers:merge")
    pair = sel.access_pair(request.user, *ids, perm=sel.CHANGE_CANDIDATE)
    form = _merge_form(pair, request.POST)
    if not form.is_valid() or form.cleaned_data["decision"] not in ("merge", "reject"):
        messages.error(request, "Choose the surviving customer, then merge or reject.")
        return _merge_page(request, pair=pair, candidate=None, form=form)
    decision = form.cleaned_data["decision"]
    survivor_id = form.cleaned_data["survivor"]
    merged_id = ids[1] if survivor_id == ids[0] else ids[0]
    try:
        if decision == "merge":
            customer_merge(
                survivor_id=survivor_id,
                merged_id=merged_id,
                user=request.user,
                field_choices=form.field_choices(),
            )
        else:
            pair_reject(
                a_id=ids[0], b_id=ids[1], user=request.user, reason=form.cleaned_data["reason"]
            )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _merge_page(request, pair=pair, candidate=None, form=form)
    if decision == "merge":
        return _merged(request, survivor_id, pair)
    messages.success(
        request,
        f"“{pair[0]}” and “{pair[1]}” are marked as not the same customer; they will not be "
        "suggested again.",
    )
    return redirect("customers:detail", ids[0])


# --- merge history and undo --------------------------------------------------------------


@require_GET
def customer_merges(request: HttpRequest, pk: int) -> HttpResponse:
    """The merge history block of the 360 page (an htmx partial, or a page of its own)."""
    customer = access_customer(request.user, pk, sel.VIEW_MERGE)
    context = {
        "customer": customer,
        "merges": sel.merge_history(customer=customer),
        "limit": sel.MERGE_HISTORY_LIMIT,
        "section": {"name": "merges", "title": "Merge history"},
    }
    template_name = "customers/stewardship/merges.html"
    if _is_partial(request):
        template_name += "#section"
    response = render(request, template_name, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
def merge_undo(request: HttpRequest, pk: int) -> HttpResponse:
    record = sel.access_merge_record(request.user, pk, sel.CHANGE_MERGE)
    try:
        restored = customer_unmerge(merge_id=record.pk, user=request.user)
    except ApplicationError as exc:
        messages.error(request, f"Merge #{record.pk} was not undone: {exc.message}")
        return redirect("customers:detail", record.survivor_id)
    messages.success(
        request,
        f"Merge #{record.pk} undone: “{restored}” is a customer of its own again, with its "
        "rows and source records. The pair will not be suggested again.",
    )
    return redirect(restored.get_absolute_url())


# --- the field-ownership matrix ----------------------------------------------------------


def _owners(systems: list[SourceSystem] | None = None) -> list:
    if systems is None:
        systems = list(SourceSystem.objects.order_by("name"))
    return sel.owner_choices(systems)


def _cell_form(cell, owners: list, data: Any = None) -> OwnershipForm:
    initial = {
        "owner": owner_value(cell),
        "direction": cell.direction,
        "conflict_rule": cell.conflict_rule,
    }
    return OwnershipForm(
        data,
        owners=owners,
        initial=initial,
        prefix=f"cell{cell.pk}",
        form_id=f"cell-form-{cell.pk}",
    )


@require_GET
def ownership(request: HttpRequest) -> HttpResponse:
    sel.require_perm(request.user, sel.VIEW_OWNERSHIP)
    matrix = sel.ownership_matrix()
    context: dict[str, Any] = {"matrix": matrix, "nav": "ownership"}
    if request.user.has_perm(sel.CHANGE_OWNERSHIP):
        context["add_form"] = OwnershipAddForm(owners=_owners(), fields=sel.unowned_fields(matrix))
    return render(request, "customers/stewardship/ownership.html", context)


@require_GET
def ownership_cell(request: HttpRequest, pk: int) -> HttpResponse:
    """One row of the matrix, for "Cancel" after an inline edit."""
    cell = sel.access_ownership_cell(request.user, pk)
    template_name = "customers/stewardship/ownership.html"
    if _is_partial(request):
        return render(request, template_name + "#row", {"cell": cell})
    return redirect(f"{reverse('customers:ownership')}#cell-{cell.pk}")


def ownership_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the row as a form (htmx). POST: save through the service, answer the row."""
    cell = sel.access_ownership_cell(request.user, pk, sel.CHANGE_OWNERSHIP)
    template_name = "customers/stewardship/ownership.html"
    form = _cell_form(cell, _owners(), request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            try:
                cell = field_ownership_update(
                    cell_id=cell.pk, user=request.user, **form.service_kwargs()
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                if _is_partial(request):
                    context = {"cell": sel.labelled(cell), "saved": True}
                    return render(request, template_name + "#row", context)
                messages.success(request, f"{cell.entity}.{cell.field} saved.")
                return redirect(f"{reverse('customers:ownership')}#cell-{cell.pk}")
    elif request.method != "GET":
        return HttpResponse(status=405)
    if not _is_partial(request):
        return redirect(f"{reverse('customers:ownership')}#cell-{cell.pk}")
    return render(request, template_name + "#edit-row", {"cell": cell, "form": form})


@require_GET
def ownership_history(request: HttpRequest, pk: int) -> HttpResponse:
    cell = sel.access_ownership_cell(request.user, pk)
    entries = sel.cell_history(cell=cell)
    return render(
        request, "customers/stewardship/ownership.html#history", {"cell": cell, "entries": entries}
    )


@require_POST
def ownership_add(request: HttpRequest) -> HttpResponse:
    sel.require_perm(request.user, sel.VIEW_OWNERSHIP)
    sel.require_perm(request.user, sel.CHANGE_OWNERSHIP)
    matrix = sel.ownership_matrix()
    form = OwnershipAddForm(request.POST, owners=_owners(), fields=sel.unowned_fields(matrix))
    if form.is_valid():
        entity, field = form.entity_field()
        try:
            cell = field_ownership_create(
                entity=entity, field=field, user=request.user, **form.service_kwargs()
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request, f"{cell.entity}.{sel.field_label(cell.field)} has a row of its own now."
            )
            return redirect(f"{reverse('customers:ownership')}#cell-{cell.pk}")
    context = {"matrix": matrix, "add_form": form, "nav": "ownership"}
    return render(request, "customers/stewardship/ownership.html", context)


# --- the matcher's thresholds ------------------------------------------------------------

HISTORY_ROWS = 20


def _settings_form(row: MatchSettings, data: Any = None) -> MatchSettingsForm:
    initial = {"upper": row.upper, "lower": row.lower, "max_key_customers": row.max_key_customers}
    return MatchSettingsForm(data, initial=initial, prefix=row.kind)


def _settings_page(
    request: HttpRequest, *, bound: MatchSettingsForm | None = None, status: int = 200
) -> HttpResponse:
    settings = sel.match_settings()
    panels = [
        (item, bound if bound is not None and bound.prefix == item.kind else None)
        for item in sel.kind_thresholds(settings)
    ]
    context = {
        "panels": [(item, form or _settings_form(item.settings)) for item, form in panels],
        "can_change": request.user.has_perm(sel.CHANGE_SETTINGS),
        "history": sel.match_settings_history(settings=settings, limit=HISTORY_ROWS),
        "min_labels": sel.SUGGEST_MIN_LABELS,
        "target_precision": sel.percent_text(sel.SUGGEST_PRECISION),
        "target_rejected": sel.percent_text(sel.SUGGEST_REJECTED),
        "nav": "duplicates",
    }
    return render(request, "customers/stewardship/match_settings.html", context, status=status)


@require_GET
def match_settings(request: HttpRequest) -> HttpResponse:
    """Per kind: the thresholds, the shared-key guard, what the labels suggest, and the
    recent changes. Stewards and admins edit; read-only roles look."""
    sel.require_perm(request.user, sel.VIEW_SETTINGS)
    return _settings_page(request)


def _settings_url(kind: str) -> str:
    return f"{reverse('customers:match_settings')}#kind-{kind}"


def _saved_message(row: MatchSettings) -> str:
    label = Customer.Kind(row.kind).label
    return (
        f"{label}: auto-link at {sel.percent_text(row.upper)} or more, review queue from "
        f"{sel.percent_text(row.lower)}, keys shared by more than {row.max_key_customers} "
        "customers stop linking. Applies to records scored from now on."
    )


@require_POST
def match_settings_save(request: HttpRequest, kind: str) -> HttpResponse:
    row = sel.access_match_settings(request.user, kind, sel.CHANGE_SETTINGS)
    form = _settings_form(row, request.POST)
    if form.is_valid():
        try:
            saved = match_settings_update(kind=row.kind, user=request.user, **form.service_kwargs())
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            before = (row.upper, row.lower, row.max_key_customers)
            if (saved.upper, saved.lower, saved.max_key_customers) == before:
                messages.success(request, f"{Customer.Kind(row.kind).label}: nothing changed.")
            else:
                messages.success(request, _saved_message(saved))
            return redirect(_settings_url(row.kind))
    messages.error(
        request,
        f"{Customer.Kind(row.kind).label}: nothing saved. Correct the thresholds below.",
    )
    return _settings_page(request, bound=form)


@require_POST
def match_settings_apply(request: HttpRequest, kind: str) -> HttpResponse:
    """Apply the suggestion the steward saw, recomputed now from the labels; refused when
    the labels changed it meanwhile (or there is none)."""
    row = sel.access_match_settings(request.user, kind, sel.CHANGE_SETTINGS)
    label = Customer.Kind(row.kind).label
    suggestion = sel.kind_suggestion(row)
    seen = ApplySuggestionForm(request.POST)
    if not suggestion.applicable:
        messages.error(request, f"{label}: there is no suggestion to apply.")
        return redirect(_settings_url(row.kind))
    if not seen.is_valid() or (seen.cleaned_data["upper"], seen.cleaned_data["lower"]) != (
        suggestion.new_upper,
        suggestion.new_lower,
    ):
        messages.error(
            request,
            f"{label}: the suggestion changed since the page was loaded (new decisions or "
            "thresholds); nothing applied. Look at the new one below.",
        )
        return redirect(_settings_url(row.kind))
    try:
        saved = match_settings_update(
            kind=row.kind,
            upper=suggestion.new_upper,
            lower=suggestion.new_lower,
            max_key_customers=row.max_key_customers,
            user=request.user,
        )
    except ApplicationError as exc:
        messages.error(request, f"{label}: {exc.message}")
        return redirect(_settings_url(row.kind))
    messages.success(request, f"Suggestion applied. {_saved_message(saved)}")
    return redirect(_settings_url(row.kind))
