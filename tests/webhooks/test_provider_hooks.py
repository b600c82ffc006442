"""Every Git host's real payloads through its own endpoint: signed, parsed, recorded, queued.

GitLab, Bitbucket Cloud and Data Center, Gitea and Forgejo, driven with the
files in tests/fixtures/ and the headers each host sends.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from builder.db.models import Build, Delivery
from tests.payloads import FIXTURES, hmac_hex, signed_headers

GITLAB_PUSH = {"X-Gitlab-Event": "Push Hook"}
GITLAB_TAG = {"X-Gitlab-Event": "Tag Push Hook"}
CLOUD = {"X-Event-Key": "repo:push"}
SERVER = {"X-Event-Key": "repo:refs_changed"}
GITEA = {"X-Gitea-Event": "push"}

# provider, fixture, event headers, repository, [(ref, commit, tags)] or the ignored reason
CASES = [
    ("gitlab", "gitlab/push_hook.json", GITLAB_PUSH, "gitlab-org/hello-world",
     [("refs/heads/master", "2adc9465c4edfc33834e173fe89436a7cb899a1d", ["master", "2adc946", "latest"])]),
    ("gitlab", "gitlab/push_hook_docs.json", GITLAB_PUSH, "mike/diaspora",
     [("refs/heads/master", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", ["master", "da15608", "latest"])]),
    ("gitlab", "gitlab/tag_push_hook_create.json", GITLAB_TAG, "gitlab-org/hello-world",
     [("refs/tags/v1.0.0", "2adc9465c4edfc33834e173fe89436a7cb899a1d", ["v1.0.0"])]),
    ("gitlab", "gitlab/tag_push_hook_docs.json", GITLAB_TAG, "jsmith/example",
     [("refs/tags/v1.0.0", "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", ["v1.0.0"])]),
    ("gitlab", "gitlab/push_hook_branch_deleted.json", GITLAB_PUSH, "gitlab-org/hello-world",
     "branch 'feature' was deleted"),
    ("gitlab", "gitlab/tag_push_hook_deleted.json", GITLAB_TAG, "gitlab-org/hello-world",
     "tag 'v1.0.0' was deleted"),
    ("bitbucket", "bitbucket/cloud_repo_push_branch.json", CLOUD, "brydzewski/foo",
     [("refs/heads/master", "141977fedf5cf35aa290ac87d4b5177ac4cd9de1", ["master", "141977f", "latest"])]),
    ("bitbucket", "bitbucket/cloud_repo_push_tag_created.json", CLOUD, "brydzewski/foo",
     [("refs/tags/feature/x", "141977fedf5cf35aa290ac87d4b5177ac4cd9de1", ["feature-x"])]),
    ("bitbucket", "bitbucket/cloud_repo_push_branch_deleted.json", CLOUD, "brydzewski/foo",
     "branch 'develop' was deleted"),
    ("bitbucket", "bitbucket/server_refs_changed_update.json", SERVER, "PRJ/my-repo",
     [("refs/heads/master", "823b2230a56056231c9425d63758fa87078a66b4", ["master", "823b223", "latest"])]),
    ("bitbucket", "bitbucket/server_refs_changed_tag_add.json", SERVER, "PRJ/my-repo",
     [("refs/tags/v1.1.0", "823b2230a56056231c9425d63758fa87078a66b4", ["v1.1.0"])]),
    ("bitbucket", "bitbucket/server_refs_changed_branch_delete.json", SERVER, "PRJ/my-repo",
     "branch 'develop' was deleted"),
    ("gitea", "gitea/push_docs.json", GITEA, "gitea/webhooks",
     [("refs/heads/develop", "bffeb74224043ba2feb48d137756c8a9331c449a", ["develop", "bffeb74"])]),
    ("gitea", "gitea/push_branch.json", GITEA, "gogits/hello-world",
     [("refs/heads/master", "4522cbcefc20728a5b72b3a86af35e608622c514", ["master", "4522cbc", "latest"])]),
    ("gitea", "gitea/create_tag.json", {"X-Gitea-Event": "create"}, "gogits/hello-world",
     "create of tag 'v1.0.0' is recorded, not built"),
    ("gitea", "gitea/delete_branch.json", {"X-Gitea-Event": "delete"}, "gogits/hello-world",
     "delete of branch 'feature' is recorded, not built"),
]


def make_trigger(client, provider: str, repository: str) -> tuple[dict, str]:
    secret = "secret-" + uuid.uuid4().hex
    response = client.post("/api/triggers", json={
        "provider": provider, "repository": repository, "clone_url": "file:///nonexistent.git",
        "secret": secret, "image": "acme/" + uuid.uuid4().hex[:10], "default_branch": "master"})
    assert response.status_code == 201, response.json
    return response.json, secret


def builds_of(app, trigger_id: int) -> list[Build]:
    with app.extensions["buildhook"].sessions() as session:
        return list(session.scalars(select(Build).where(Build.trigger_id == trigger_id).order_by(Build.id)))


@pytest.mark.parametrize("provider, fixture, event, repository, expected", CASES,
                         ids=[case[1] for case in CASES])
def test_real_payload_queues_the_expected_builds_or_is_ignored(app, client, provider, fixture, event,
                                                               repository, expected):
    trigger, secret = make_trigger(client, provider, repository)
    body = (FIXTURES / fixture).read_bytes()
    response = client.post(f"/hooks/{provider}", data=body, headers=signed_headers(provider, event, body, secret))
    builds = builds_of(app, trigger["id"])
    if isinstance(expected, str):
        assert response.status_code == 202
        assert response.json["outcome"] == "ignored"
        assert expected in response.json["reason"]
        assert builds == []
    else:
        assert response.status_code == 202, response.json
        assert response.json["outcome"] == "accepted"
        assert [(b.ref, b.commit, b.tags) for b in builds] == expected
        assert all(b.provider == provider and b.state == "queued" for b in builds)


@pytest.mark.parametrize("provider, fixture, event, repository", [
    ("gitlab", "gitlab/push_hook.json", GITLAB_PUSH, "gitlab-org/hello-world"),
    ("bitbucket", "bitbucket/cloud_repo_push_branch.json", CLOUD, "brydzewski/foo"),
    ("bitbucket", "bitbucket/server_refs_changed_update.json", SERVER, "PRJ/my-repo"),
    ("gitea", "gitea/push_branch.json", GITEA, "gogits/hello-world"),
])
def test_wrong_secret_gets_401_and_no_build(app, client, provider, fixture, event, repository):
    trigger, _secret = make_trigger(client, provider, repository)
    body = (FIXTURES / fixture).read_bytes()
    response = client.post(f"/hooks/{provider}", data=body,
                           headers=signed_headers(provider, event, body, "not-the-secret"))
    assert response.status_code == 401
    assert builds_of(app, trigger["id"]) == []


@pytest.mark.parametrize("provider, fixture, event, repository", [
    ("gitlab", "gitlab/push_hook.json", GITLAB_PUSH, "gitlab-org/hello-world"),
    ("bitbucket", "bitbucket/cloud_repo_push_branch.json", CLOUD, "brydzewski/foo"),
    ("bitbucket", "bitbucket/server_refs_changed_update.json", SERVER, "PRJ/my-repo"),
    ("gitea", "gitea/push_branch.json", GITEA, "gogits/hello-world"),
])
def test_a_redelivered_delivery_builds_once(app, client, provider, fixture, event, repository):
    trigger, secret = make_trigger(client, provider, repository)
    body = (FIXTURES / fixture).read_bytes()
    headers = signed_headers(provider, event, body, secret)
    first = client.post(f"/hooks/{provider}", data=body, headers=headers)
    again = client.post(f"/hooks/{provider}", data=body, headers=headers)
    assert first.json["outcome"] == "accepted"
    assert again.json["outcome"] == "duplicate"
    assert len(builds_of(app, trigger["id"])) == 1


def test_forgejo_headers_are_accepted_on_the_gitea_endpoint(app, client):
    trigger, secret = make_trigger(client, "gitea", "gogits/hello-world")
    body = (FIXTURES / "gitea/push_branch.json").read_bytes()
    headers = {"Content-Type": "application/json", "X-Forgejo-Event": "push",
               "X-Forgejo-Delivery": str(uuid.uuid4()), "X-Forgejo-Signature": hmac_hex(body, secret)}
    response = client.post("/hooks/gitea", data=body, headers=headers)
    assert response.json["outcome"] == "accepted"
    assert [b.commit for b in builds_of(app, trigger["id"])] == ["4522cbcefc20728a5b72b3a86af35e608622c514"]


def test_one_bitbucket_push_with_several_changes_builds_each_new_head(app, client):
    trigger, secret = make_trigger(client, "bitbucket", "brydzewski/foo")
    payload = json.loads((FIXTURES / "bitbucket/cloud_repo_push_branch.json").read_text())
    change = payload["push"]["changes"][0]
    second = json.loads(json.dumps(change))
    second["new"]["name"] = "release"
    second["new"]["target"]["hash"] = "f" * 40
    deleted = {"new": None, "old": {"type": "branch", "name": "gone", "target": {"hash": "e" * 40}},
               "closed": True, "created": False, "forced": False}
    payload["push"]["changes"] = [change, second, deleted]
    body = json.dumps(payload).encode()
    response = client.post("/hooks/bitbucket", data=body, headers=signed_headers("bitbucket", CLOUD, body, secret))
    assert response.json["outcome"] == "accepted"
    assert [(b.ref_name, b.commit) for b in builds_of(app, trigger["id"])] == [
        ("master", "141977fedf5cf35aa290ac87d4b5177ac4cd9de1"), ("release", "f" * 40)]


def test_deliveries_record_the_gitlab_idempotency_key(app, client):
    trigger, secret = make_trigger(client, "gitlab", "gitlab-org/hello-world")
    body = (FIXTURES / "gitlab/push_hook.json").read_bytes()
    headers = signed_headers("gitlab", GITLAB_PUSH, body, secret)
    response = client.post("/hooks/gitlab", data=body, headers=headers)
    with app.extensions["buildhook"].sessions() as session:
        delivery = session.get(Delivery, response.json["delivery"])
    assert delivery.delivery_id == headers["Idempotency-Key"]
    assert (delivery.provider, delivery.event, delivery.outcome) == ("gitlab", "Push Hook", "accepted")
