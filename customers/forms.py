"""Forms of the data steward's pages. They parse and validate input; the writes are in
``customers.services``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from customers.models import ConflictRule, Customer, Direction, FieldOwnership
from customers.services.merge import Side
from customers.stewardship_selectors import QUEUE_STATUSES, QueueFilters


def _style(form: forms.Form) -> None:
    """Concord's input style on every visible control but radios and checkboxes."""
    for bound in form.fields.values():
        widget = bound.widget
        if not isinstance(widget, forms.CheckboxInput | forms.HiddenInput | forms.RadioSelect):
            widget.attrs.setdefault("class", "input")


def _percent_field(label: str, **extra: Any) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=False,
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.1", "inputmode": "decimal"}),
        **extra,
    )


class QueueFilterForm(forms.Form):
    """The queue's filters (GET). Scores are percentages; a bad value filters nothing
    rather than failing the page."""

    status = forms.ChoiceField(
        choices=[(s, s.capitalize()) for s in QUEUE_STATUSES], required=False
    )
    system = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    kind = forms.ChoiceField(choices=[("", "Any kind"), *Customer.Kind.choices], required=False)
    min_score = _percent_field("Score from %")
    max_score = _percent_field("Score to %")

    def __init__(self, data: Any = None, *, systems: list[tuple[int, str]]) -> None:
        super().__init__(data)
        self.fields["system"].choices = [("", "Any system"), *systems]
        _style(self)

    def filters(self) -> QueueFilters:
        if not self.is_valid():
            # Keep whatever parsed; ignore the rest.
            data = {k: v for k, v in self.cleaned_data.items() if k not in self.errors}
        else:
            data = self.cleaned_data

        def probability(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value) / 100

        return QueueFilters(
            status=data.get("status") or "pending",
            system_id=data.get("system"),
            kind=data.get("kind") or "",
            min_probability=probability("min_score"),
            max_probability=probability("max_score"),
        )


class BulkApproveForm(forms.Form):
    """Merge every pending pair at or above a score; shown once for confirmation."""

    min_score = forms.DecimalField(
        label="Score at least %",
        min_value=Decimal("50"),
        max_value=Decimal("100"),
        decimal_places=2,
        initial=Decimal("99"),
        widget=forms.NumberInput(attrs={"step": "0.1", "inputmode": "decimal"}),
        help_text="Pairs below 50% are never approved in bulk.",
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)

    @property
    def min_probability(self) -> float:
        return float(self.cleaned_data["min_score"]) / 100


class PairForm(forms.Form):
    """Two customer ids for an ad-hoc comparison (GET)."""

    a = forms.IntegerField(min_value=1, label="Customer #")
    b = forms.IntegerField(min_value=1, label="and customer #")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("a") and data.get("a") == data.get("b"):
            raise forms.ValidationError("Enter two different customers.")
        return data


DECISIONS = [("merge", "Merge"), ("reject", "Not the same"), ("defer", "Defer")]


class MergeForm(forms.Form):
    """The side-by-side page: which customer survives, which side each field takes, and
    the decision. Field choices name a customer id, not a side, so they keep their
    meaning when the steward swaps the survivor."""

    survivor = forms.TypedChoiceField(coerce=int)
    decision = forms.ChoiceField(choices=DECISIONS, required=False)
    reason = forms.CharField(required=False, max_length=255, strip=True)

    def __init__(self, data: Any = None, *, pair: list[Customer], field_names: list[str]) -> None:
        super().__init__(data)
        ids = [(c.pk, f"#{c.pk}") for c in pair]
        self.fields["survivor"].choices = ids
        self.field_names = list(field_names)
        for name in self.field_names:
            self.fields[f"f_{name}"] = forms.TypedChoiceField(
                choices=ids, coerce=int, required=False, empty_value=None
            )
        _style(self)

    def field_choices(self) -> dict[str, Side]:
        """Field → "survivor" or "merged", for the fields the form names. Call after
        ``is_valid()``."""
        survivor = self.cleaned_data["survivor"]
        choices: dict[str, Side] = {}
        for name in self.field_names:
            picked = self.cleaned_data.get(f"f_{name}")
            if picked is not None:
                choices[name] = "survivor" if picked == survivor else "merged"
        return choices


def parse_owner(value: str) -> tuple[str, int | None]:
    """ "kind:crm" → ("crm", None); "system:3" → ("", 3); "" → ("", None)."""
    kind, _, rest = value.partition(":")
    if kind == "system" and rest.isdigit():
        return "", int(rest)
    if kind == "kind":
        return rest, None
    return "", None


def owner_value(cell: FieldOwnership) -> str:
    if cell.owner_system_id:
        return f"system:{cell.owner_system_id}"
    if cell.owner_kind:
        return f"kind:{cell.owner_kind}"
    return ""


class OwnershipForm(forms.Form):
    owner = forms.ChoiceField(label="System of record", required=False)
    direction = forms.ChoiceField(choices=Direction.choices)
    conflict_rule = forms.ChoiceField(label="Conflict rule", choices=ConflictRule.choices)

    def __init__(self, data: Any = None, *, owners: list, form_id: str = "", **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.fields["owner"].choices = owners
        _style(self)
        if form_id:
            # The controls sit in table cells, outside their <form>: tie them to it.
            for bound in self.fields.values():
                bound.widget.attrs["form"] = form_id

    def service_kwargs(self) -> dict[str, Any]:
        owner_kind, owner_system_id = parse_owner(self.cleaned_data["owner"])
        return {
            "owner_kind": owner_kind,
            "owner_system_id": owner_system_id,
            "direction": self.cleaned_data["direction"],
            "conflict_rule": self.cleaned_data["conflict_rule"],
        }


class OwnershipAddForm(OwnershipForm):
    cell = forms.ChoiceField(label="Field")

    field_order = ["cell", "owner", "direction", "conflict_rule"]

    def __init__(self, data: Any = None, *, owners: list, fields: list, **kwargs: Any) -> None:
        super().__init__(data, owners=owners, **kwargs)
        self.fields["cell"].choices = [("", "Choose a field…"), *fields]
        self.order_fields(self.field_order)

    def entity_field(self) -> tuple[str, str]:
        entity, _, name = self.cleaned_data["cell"].partition(":")
        return entity, name
