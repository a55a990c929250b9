"""Forms of the matcher's settings page. They parse and validate what a steward types; the
write is ``customers.services.stewardship.match_settings_update``, which checks the same
rules again (it is the authority; the form is there for the messages next to the fields).
"""

from __future__ import annotations

from typing import Any

from django import forms

from customers.services.stewardship import MAX_KEY_GUARD, MIN_KEY_GUARD

UPPER_ABOVE_ONE = "The upper threshold cannot be above 1: it is a probability."
LOWER_NOT_POSITIVE = (
    "The lower threshold must be above 0: at 0 every scored pair would go to the review queue."
)
LOWER_NOT_BELOW_UPPER = (
    "The lower threshold must be below the upper threshold: pairs scoring between them go "
    "to the review queue."
)
GUARD_TOO_SMALL = (
    f"The shared-key guard must be at least {MIN_KEY_GUARD}: it is how many customers may share "
    "an e-mail or phone before that key stops linking."
)
GUARD_TOO_LARGE = f"The shared-key guard can be at most {MAX_KEY_GUARD:,}."


def _probability_input() -> forms.NumberInput:
    return forms.NumberInput(
        attrs={"class": "input", "step": "any", "min": "0", "max": "1", "inputmode": "decimal"}
    )


class MatchSettingsForm(forms.Form):
    """The thresholds of one kind: auto-link at or above ``upper``, review from ``lower``,
    and the shared-key guard. Rendered with the kind as prefix (two forms on one page)."""

    upper = forms.FloatField(
        label="Auto-link at or above",
        max_value=1,
        widget=_probability_input(),
        error_messages={
            "required": "Enter the upper threshold, a probability up to 1.",
            "invalid": "Enter the upper threshold as a number such as 0.99.",
            "max_value": UPPER_ABOVE_ONE,
        },
        help_text="Match probability from which a record is linked without review.",
    )
    lower = forms.FloatField(
        label="Review queue from",
        widget=_probability_input(),
        error_messages={
            "required": "Enter the lower threshold, a probability above 0.",
            "invalid": "Enter the lower threshold as a number such as 0.8.",
        },
        help_text="Below it the record becomes a new customer.",
    )
    max_key_customers = forms.IntegerField(
        label="Shared-key guard",
        min_value=MIN_KEY_GUARD,
        max_value=MAX_KEY_GUARD,
        widget=forms.NumberInput(attrs={"class": "input", "step": "1", "min": str(MIN_KEY_GUARD)}),
        error_messages={
            "required": "Enter the shared-key guard, a whole number of customers.",
            "invalid": "Enter the shared-key guard as a whole number of customers.",
            "min_value": GUARD_TOO_SMALL,
            "max_value": GUARD_TOO_LARGE,
        },
        help_text="A key shared by more customers than this stops linking (info@, switchboards).",
    )

    def clean_lower(self) -> float:
        lower = self.cleaned_data["lower"]
        if lower <= 0:
            raise forms.ValidationError(LOWER_NOT_POSITIVE, code="min_value")
        return lower

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        upper, lower = data.get("upper"), data.get("lower")
        if upper is not None and lower is not None and lower >= upper:
            self.add_error("lower", forms.ValidationError(LOWER_NOT_BELOW_UPPER, code="order"))
        return data

    def service_kwargs(self) -> dict[str, Any]:
        return {
            "upper": self.cleaned_data["upper"],
            "lower": self.cleaned_data["lower"],
            "max_key_customers": self.cleaned_data["max_key_customers"],
        }


class ApplySuggestionForm(forms.Form):
    """The suggestion the steward saw; the view recomputes it and refuses a stale one."""

    upper = forms.FloatField()
    lower = forms.FloatField()
