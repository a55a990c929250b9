"""Forms of the operations pages. Credentials are write-only: the fields never render a
value, a blank field keeps the stored secret."""

from __future__ import annotations

from typing import Any

from django import forms

from customers.models import Entity, SystemKind

from .models import Connection
from .ops import ConnectionSettings

CREDENTIAL_PREFIX = "credential_"


def _style(form: forms.Form) -> None:
    """Concord's input style on every visible control but checkboxes."""
    for field in form.fields.values():
        widget = field.widget
        if not isinstance(widget, forms.CheckboxInput | forms.HiddenInput):
            widget.attrs.setdefault("class", "input")


def _credential_field(name: str, stored: str | None) -> forms.Field:
    help_text = f"Stored: {stored}. Leave blank to keep it." if stored else ""
    return forms.CharField(
        label=name.replace("_", " ").capitalize(),
        required=False,
        strip=True,
        max_length=4096,
        help_text=help_text,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password", "spellcheck": "false"}
        ),
    )


class CredentialsMixin:
    """Adds one write-only field per credential name; ``new_credentials()`` returns the
    ones that were filled in."""

    def add_credentials(self, names: list[str], masked: dict[str, str] | None = None) -> None:
        masked = masked or {}
        for name in names:
            self.fields[CREDENTIAL_PREFIX + name] = _credential_field(name, masked.get(name))

    def credential_fields(self) -> list[forms.BoundField]:
        return [self[n] for n in self.fields if n.startswith(CREDENTIAL_PREFIX)]

    def new_credentials(self) -> dict[str, str]:
        return {
            name.removeprefix(CREDENTIAL_PREFIX): value
            for name, value in self.cleaned_data.items()
            if name.startswith(CREDENTIAL_PREFIX) and value
        }


class ConnectionForm(CredentialsMixin, forms.Form):
    enabled = forms.BooleanField(
        required=False, help_text="Paused connections are not pulled on schedule or by hand."
    )
    base_url = forms.URLField(
        label="Base URL", max_length=500, assume_scheme="https", help_text="The API's address."
    )
    rate_limit_per_second = forms.FloatField(
        label="Requests per second", min_value=0, help_text="0 turns the limit off."
    )
    rate_limit_burst = forms.IntegerField(
        label="Burst", min_value=1, help_text="Requests allowed at once after a quiet spell."
    )
    delete_policy = forms.ChoiceField(
        choices=Connection.DeletePolicy.choices,
        help_text="What an upstream delete does in the hub; invoices and payments are "
        "never hard-deleted.",
    )
    schedule_minutes = forms.IntegerField(
        label="Pull every (minutes)", min_value=0, help_text="0: only when synced by hand."
    )

    def __init__(
        self,
        *args: Any,
        connection: Connection,
        names: list[str],
        masked: dict[str, str],
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "initial",
            {
                "enabled": connection.enabled,
                "base_url": connection.config.get("base_url", ""),
                "rate_limit_per_second": connection.rate_limit_per_second,
                "rate_limit_burst": connection.rate_limit_burst,
                "delete_policy": connection.delete_policy,
                "schedule_minutes": connection.schedule_minutes,
            },
        )
        super().__init__(*args, **kwargs)
        if connection.connector != Connection.Connector.REST:
            del self.fields["base_url"]
        self.add_credentials(names, masked)
        _style(self)

    def settings(self) -> ConnectionSettings:
        data = self.cleaned_data
        return ConnectionSettings(
            enabled=data["enabled"],
            rate_limit_per_second=data["rate_limit_per_second"],
            rate_limit_burst=data["rate_limit_burst"],
            delete_policy=data["delete_policy"],
            schedule_minutes=data["schedule_minutes"],
            base_url=data.get("base_url"),
        )


class ConnectionCreateForm(CredentialsMixin, forms.Form):
    name = forms.SlugField(
        label="System name",
        max_length=64,
        help_text="Letters, digits, '-' and '_': the name in webhooks and provenance.",
    )
    kind = forms.ChoiceField(
        choices=[("", "From the preset, or guessed from the name"), *SystemKind.choices],
        required=False,
    )
    preset = forms.ChoiceField(required=False)
    base_url = forms.URLField(
        label="Base URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text="Leave blank for the preset's public API.",
    )
    enabled = forms.BooleanField(
        required=False, initial=True, label="Pull on schedule once created"
    )

    def __init__(self, *args: Any, presets: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.presets = presets
        self.fields["preset"].choices = [
            *[(name, p.label) for name, p in presets.items()],
            ("", "None: file import only"),
        ]
        chosen = self.chosen_preset()
        if chosen is not None:
            self.fields["base_url"].widget.attrs["placeholder"] = chosen.default_base_url
            for name in chosen.credentials:
                self.fields[CREDENTIAL_PREFIX + name] = _credential_field(name, None)
        else:
            self.fields["base_url"].widget = forms.HiddenInput()
        _style(self)

    def chosen_preset(self) -> Any | None:
        name = self.data.get("preset") if self.is_bound else self.initial.get("preset")
        if name is None and not self.is_bound:
            name = next(iter(self.presets), "")
        return self.presets.get(name or "")


class DeadLetterFilterForm(forms.Form):
    system = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    entity = forms.ChoiceField(choices=[("", "All entities"), *Entity.choices], required=False)
    q = forms.CharField(required=False, max_length=200, label="Error contains")

    def __init__(self, *args: Any, systems: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["system"].choices = [("", "All systems"), *systems]
        _style(self)

    def filters(self) -> dict[str, Any]:
        """The valid filters; an invalid value filters nothing rather than failing."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "system_id": data.get("system"),
            "entity": data.get("entity", ""),
            "text": (data.get("q") or "").strip(),
        }
