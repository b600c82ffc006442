"""Which status API and which clone credentials a trigger's settings turn into."""

from __future__ import annotations

import pytest

from builder.db.models import Trigger
from builder.secrets import SecretBox
from builder.triggers.services import clone_auth, status_target

BOX = SecretBox("test-key")


def trigger(provider="github", clone_url="https://git.example.com/acme/widget.git", **fields) -> Trigger:
    return Trigger(provider=provider, repository="acme/widget", clone_url=clone_url, secret_enc="x",
                   image="acme/widget", **fields)


@pytest.mark.parametrize("provider, api_url, clone_url, expected_provider, expected_url", [
    ("github", None, "https://github.com/a/b.git", "github", "https://api.github.com"),
    ("github", "https://ghe.example.com/api/v3/", "https://ghe.example.com/a/b.git", "github",
     "https://ghe.example.com/api/v3"),
    ("gitlab", None, "https://gitlab.com/a/b.git", "gitlab", "https://gitlab.com"),
    ("gitlab", "https://git.corp.example", "https://git.corp.example/a/b.git", "gitlab", "https://git.corp.example"),
    ("bitbucket", None, "https://bitbucket.org/a/b.git", "bitbucket", "https://api.bitbucket.org/2.0"),
    ("bitbucket", "https://bitbucket.corp.example", "https://bitbucket.corp.example/scm/a/b.git",
     "bitbucket-server", "https://bitbucket.corp.example"),
    ("gitea", None, "https://user@gitea.example.com:3000/a/b.git", "gitea", "https://gitea.example.com:3000/api/v1"),
])
def test_status_target_follows_the_provider_and_api_url(provider, api_url, clone_url, expected_provider,
                                                         expected_url):
    target = status_target(trigger(provider, clone_url, api_url=api_url, status_token_enc=BOX.seal("tok")), BOX)
    assert (target.provider, target.api_url, target.repository, target.token) == (
        expected_provider, expected_url, "acme/widget", "tok")


def test_no_status_token_means_no_statuses():
    assert status_target(trigger(api_url="https://api.github.com"), BOX) is None


def test_clone_auth_prefers_the_deploy_key_and_otherwise_the_token():
    keyed = trigger(ssh_key_enc=BOX.seal("-----BEGIN KEY-----"), ssh_known_hosts="host ssh-ed25519 AAAA",
                    clone_token_enc=BOX.seal("tok"))
    assert clone_auth(keyed, BOX).ssh_private_key == "-----BEGIN KEY-----"
    assert clone_auth(keyed, BOX).ssh_known_hosts == "host ssh-ed25519 AAAA"
    tokened = trigger(clone_token_enc=BOX.seal("tok"), clone_username="oauth2")
    assert (clone_auth(tokened, BOX).token, clone_auth(tokened, BOX).username) == ("tok", "oauth2")
    assert clone_auth(trigger(), BOX) is None
