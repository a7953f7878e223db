"""The forms' rules for every text field, whichever caller fills them (a page, the API, the command line)."""

import inspect

import pytest
from wtforms import FieldList, FormField, StringField, TextAreaField
from wtforms.fields.core import UnboundField
from wtforms.validators import Length

import forms

# Fields whose text is only compared, never stored, logged or sent on (see forms.LoginForm).
COMPARED_ONLY = {("LoginForm", "password"), ("PasswordChangeForm", "current_password")}


def form_classes():
    """Every form class forms.py defines."""
    return [cls for _, cls in inspect.getmembers(forms, inspect.isclass)
            if cls.__module__ == "forms" and hasattr(cls, "_wtforms_meta") and not cls.__name__.startswith("_")]


def text_fields(form_class):
    """(form name, field name, UnboundField) of every text field of `form_class`, rows of a FieldList included."""
    for name, unbound in inspect.getmembers(form_class, lambda value: isinstance(value, UnboundField)):
        if unbound.field_class in (FieldList, FormField):
            inner = unbound.args[0]
            yield from text_fields(inner.args[0] if inner.field_class is FormField else inner)
        elif issubclass(unbound.field_class, StringField):  # TextAreaField and PasswordField are StringFields
            yield form_class.__name__, name, unbound


def validators(unbound):
    return list(unbound.kwargs.get("validators") or (unbound.args[1] if len(unbound.args) > 1 else []))


ALL_TEXT_FIELDS = [field for form_class in form_classes() for field in text_fields(form_class)]
FIELD_IDS = [f"{form}.{name}" for form, name, _ in ALL_TEXT_FIELDS]


def test_the_forms_are_all_found():
    names = {form for form, _, _ in ALL_TEXT_FIELDS}
    assert {"ConnectionForm", "CredentialForm", "CustomDataRow", "AliasForm", "GroupForm", "LoginForm",
            "AccountForm", "TokenForm", "SecretChangeForm"} <= names
    assert len(ALL_TEXT_FIELDS) >= 30


@pytest.mark.parametrize(("form", "name", "unbound"), ALL_TEXT_FIELDS, ids=FIELD_IDS)
def test_every_text_field_refuses_control_characters_a_description_keeps_its_line_breaks(form, name, unbound):
    checks = validators(unbound)
    if (form, name) in COMPARED_ONLY:
        return
    if unbound.field_class is TextAreaField:
        assert forms.only_line_breaks in checks and forms.no_control_characters not in checks
    else:
        assert forms.no_control_characters in checks


def test_a_description_keeps_line_breaks_and_nothing_else():
    assert not forms.CONTROL_CHARACTERS_BUT_LINE_BREAKS.search("first line\r\nsecond line\nthird")
    for control in ("\t", "\x1b", "\x00", "\x7f", "\u2028"):
        assert forms.CONTROL_CHARACTERS_BUT_LINE_BREAKS.search(f"a{control}b"), repr(control)


@pytest.mark.parametrize(("form", "name", "unbound"), ALL_TEXT_FIELDS, ids=FIELD_IDS)
def test_every_text_field_has_a_longest_length(form, name, unbound):
    assert any(isinstance(check, Length) and check.max > 0 for check in validators(unbound))
