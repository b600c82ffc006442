"""A forge registered at run time shows up wherever hosts are listed: the new-trigger form,
the OpenAPI provider enums and the CLI's --provider help; unregistered, it is gone again."""

from __future__ import annotations

import contextlib
import io

import pytest

from builder.errors import BadSignature
from builder.forges.base import Forge
from builder.forges.registry import FORGES, forge_for, register, unregister
from buildhook.cli import parser


class MadeUpForge(Forge):
    name = "forgejo-test"
    display_name = "Forgejo Test Host"
    signature_header = "X-Made-Up-Signature (Forgejo Test Host)"
    setup_steps = ("Open the made-up host.",)

    def describe(self, headers, body):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def verify(self, headers, body, secret):  # type: ignore[no-untyped-def]
        raise BadSignature("made up")

    def parse(self, headers, body):  # type: ignore[no-untyped-def]
        raise NotImplementedError


@pytest.fixture
def made_up_forge():
    register(MadeUpForge())
    try:
        yield forge_for("forgejo-test")
    finally:
        unregister("forgejo-test")
    assert "forgejo-test" not in FORGES


def test_the_new_trigger_form_offers_a_registered_forge(client, made_up_forge):
    page = client.get("/triggers/new")
    assert page.status_code == 200
    assert '<option value="forgejo-test" >Forgejo Test Host</option>' in page.text


def test_the_openapi_document_lists_a_registered_forge(client, made_up_forge):
    document = client.get("/api/openapi.json").json
    hook = document["paths"]["/hooks/{provider}"]["post"]
    assert "forgejo-test" in hook["parameters"][0]["schema"]["enum"]
    assert "X-Made-Up-Signature (Forgejo Test Host)" in hook["description"]
    for schema in ("Trigger", "TriggerInput", "TriggerPatch"):
        assert "forgejo-test" in document["components"]["schemas"][schema]["properties"]["provider"]["enum"]


def test_the_cli_help_lists_a_registered_forge(made_up_forge):
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
        parser().parse_args(["triggers", "add", "--help"])
    assert "forgejo-test" in shown.getvalue()


def test_an_unregistered_forge_is_gone_everywhere(client):
    register(MadeUpForge())
    unregister("forgejo-test")
    assert "forgejo-test" not in client.get("/triggers/new").text
    assert "forgejo-test" not in client.get("/api/openapi.json").text
