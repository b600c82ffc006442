"""Every Git host fixture in tests/fixtures/ through its provider module.

The expected values are written out by hand from the fixture files, not
computed from them, so a parser that reads the wrong field fails here.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from builder.errors import BadSignature
from builder.intake.events import Ignored, PushEvent
from builder.forges.registry import forge_for
from builder.forges.request import HookInfo
from tests.payloads import FIXTURES

HOSTS = ("github", "gitlab", "bitbucket", "gitea")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# Headers each host sends with a delivery (see tests/fixtures/<host>/README.md).
def github(event: str) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "ee8d97b4-1479-43f1-9cac-fbbd1b80da55",
        "X-GitHub-Hook-ID": "109948940",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "Content-Type": "application/json",
    }


def gitlab(event: str) -> dict[str, str]:
    return {
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": "s3cret",
        "X-Gitlab-Instance": "https://gitlab.com",
        "X-Gitlab-Webhook-UUID": "9b62d7ef-fddd-4cac-8b89-65c29acdf561",
        "X-Gitlab-Event-UUID": "1671f880-67c6-45cb-9dfa-f4707face4ba",
        "Idempotency-Key": "b2eecd3a-3ac9-489b-81d6-462ec4881ea5",
        "User-Agent": "GitLab/17.11.1",
        "Content-Type": "application/json",
    }


def bitbucket_cloud(event: str) -> dict[str, str]:
    return {
        "X-Event-Key": event,
        "X-Request-UUID": "3a1c5d4e-5b6f-4a7b-8c9d-0e1f2a3b4c5d",
        "X-Hook-UUID": "{0f3b2c1d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
        "X-Attempt-Number": "1",
        "User-Agent": "Bitbucket-Webhooks/2.0",
        "Content-Type": "application/json",
    }


def bitbucket_server(event: str) -> dict[str, str]:
    return {
        "X-Event-Key": event,
        "X-Request-Id": "b6a2b3c4-1d2e-4f5a-9b8c-7d6e5f4a3b2c",
        "Content-Type": "application/json; charset=utf-8",
    }


def gitea(event: str) -> dict[str, str]:
    delivery = "a4d1e2f3-0b9c-4d8e-a7f6-5e4d3c2b1a09"
    return {
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": event,
        "X-Gitea-Delivery": delivery,
        "X-Gogs-Event": event,
        "X-Gogs-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }


def ignored(reason: str, status: int = 202) -> tuple[str, int]:
    return (reason, status)


def push(provider, repository, ref, ref_type, ref_name, commit, author, message, changed_files=None):
    return PushEvent(provider, repository, ref, ref_type, ref_name, commit, author, message, changed_files)


def request(provider, repository, number, ref, head, base, commit, author, message, before=None, fork=False):
    return (PushEvent(provider, repository, ref, "pull_request", head, commit, author, message, None, before,
                      pull_request=number, base_branch=base, from_fork=fork),)


def built_only(*actions):
    return f"recorded, not built (built: {', '.join(actions)})"


GITHUB_BUILT = built_only("opened", "synchronize", "reopened")
GITLAB_BUILT = built_only("open", "update with new commits", "reopen")
CLOUD_BUILT = built_only("pullrequest:created", "pullrequest:updated")
SERVER_BUILT = built_only("pr:opened", "pr:from_ref_updated")
GITEA_BUILT = built_only("opened", "synchronized", "reopened")

# (fixture file, provider, headers, expected: tuple of PushEvents or ignored(...))
CASES = [
    # --- GitHub ---
    ("github/push_branch.json", "github", github("push"), (
        push("github", "Codertocat/Hello-World", "refs/heads/master", "branch", "master",
             "199eddf46df50de8d02e99bf1c5fdb4101338224", "Codertocat", "Update README", ("README.md",)),
    )),
    ("github/push_branch_created.json", "github", github("push"), (
        push("github", "Codertocat/Hello-World", "refs/heads/master", "branch", "master",
             "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "Codertocat", "Initial commit", None),
    )),
    ("github/push_tag.json", "github", github("push"), (
        push("github", "bradrydzewski/drone-test-go", "refs/tags/v0.0.1", "tag", "v0.0.1",
             "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd", "bradrydzewski", "Update .drone.yml", None),
    )),
    ("github/push_branch_deleted.json", "github", github("push"),
     ignored("branch 'feature-branch' was deleted")),
    ("github/push_tag_deleted.json", "github", github("push"), ignored("tag 'simple-tag' was deleted")),
    ("github/ping.json", "github", github("ping"), ignored("ping", 200)),
    ("github/create_tag.json", "github", github("create"), ignored("event 'create' is recorded but not built")),
    ("github/create_branch.json", "github", github("create"),
     ignored("event 'create' is recorded but not built")),
    ("github/pull_request_opened.json", "github", github("pull_request"), request(
        "github", "Codertocat/Hello-World", 2, "refs/pull/2/head", "changes", "master",
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "Codertocat", "Update the README with new information.")),
    ("github/pull_request_synchronize.json", "github", github("pull_request"), request(
        "github", "Codertocat/Hello-World", 2, "refs/pull/2/head", "changes", "master",
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "Codertocat", "Update the README with new information.",
        before="f95f852bd8fca8fcc58a9a2d6c842781e32a215e")),
    ("github/pull_request_reopened.json", "github", github("pull_request"), request(
        "github", "Codertocat/Hello-World", 2, "refs/pull/2/head", "changes", "master",
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "Codertocat", "Update the README with new information.")),
    ("github/pull_request_closed.json", "github", github("pull_request"),
     ignored(f"pull request #2 'closed': {GITHUB_BUILT}")),
    ("github/pull_request_labeled.json", "github", github("pull_request"),
     ignored(f"pull request #2 'labeled': {GITHUB_BUILT}")),
    # --- GitLab ---
    # 2 commits listed out of total_commits_count 4: the file list is incomplete.
    ("gitlab/push_hook_docs.json", "gitlab", gitlab("Push Hook"), (
        push("gitlab", "mike/diaspora", "refs/heads/master", "branch", "master",
             "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "GitLab dev user", "fixed readme", None),
    )),
    # No commits and no user_username: the author falls back to user_name.
    ("gitlab/tag_push_hook_docs.json", "gitlab", gitlab("Tag Push Hook"), (
        push("gitlab", "jsmith/example", "refs/tags/v1.0.0", "tag", "v1.0.0",
             "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", "John Smith", None, None),
    )),
    ("gitlab/push_hook.json", "gitlab", gitlab("Push Hook"), (
        push("gitlab", "gitlab-org/hello-world", "refs/heads/master", "branch", "master",
             "2adc9465c4edfc33834e173fe89436a7cb899a1d", "Sid Sijbrandij", "added readme\n", ("README.md",)),
    )),
    ("gitlab/push_hook_branch_deleted.json", "gitlab", gitlab("Push Hook"), ignored("branch 'feature' was deleted")),
    # before is all zeros (a new tag): the file list is unknown.
    ("gitlab/tag_push_hook_create.json", "gitlab", gitlab("Tag Push Hook"), (
        push("gitlab", "gitlab-org/hello-world", "refs/tags/v1.0.0", "tag", "v1.0.0",
             "2adc9465c4edfc33834e173fe89436a7cb899a1d", "Sid Sijbrandij", "added readme\n", None),
    )),
    ("gitlab/tag_push_hook_deleted.json", "gitlab", gitlab("Tag Push Hook"), ignored("tag 'v1.0.0' was deleted")),
    # --- Bitbucket Cloud ---
    ("bitbucket/cloud_repo_push_branch.json", "bitbucket", bitbucket_cloud("repo:push"), (
        push("bitbucket", "brydzewski/foo", "refs/heads/master", "branch", "master",
             "141977fedf5cf35aa290ac87d4b5177ac4cd9de1", "Brad Rydzewski", "Update README\n", None),
    )),
    ("bitbucket/cloud_repo_push_tag_created.json", "bitbucket", bitbucket_cloud("repo:push"), (
        push("bitbucket", "brydzewski/foo", "refs/tags/feature/x", "tag", "feature/x",
             "141977fedf5cf35aa290ac87d4b5177ac4cd9de1", "Brad Rydzewski", "Update README\n", None),
    )),
    ("bitbucket/cloud_repo_push_branch_deleted.json", "bitbucket", bitbucket_cloud("repo:push"),
     ignored("branch 'develop' was deleted")),
    # --- Bitbucket Data Center: no commit details, the author is the pushing actor ---
    ("bitbucket/server_refs_changed_update.json", "bitbucket", bitbucket_server("repo:refs_changed"), (
        push("bitbucket", "PRJ/my-repo", "refs/heads/master", "branch", "master",
             "823b2230a56056231c9425d63758fa87078a66b4", "Jane Citizen", None, None),
    )),
    ("bitbucket/server_refs_changed_tag_add.json", "bitbucket", bitbucket_server("repo:refs_changed"), (
        push("bitbucket", "PRJ/my-repo", "refs/tags/v1.1.0", "tag", "v1.1.0",
             "823b2230a56056231c9425d63758fa87078a66b4", "Jane Citizen", None, None),
    )),
    ("bitbucket/server_refs_changed_branch_delete.json", "bitbucket", bitbucket_server("repo:refs_changed"),
     ignored("branch 'develop' was deleted")),
    # --- pull requests: GitLab, Bitbucket Cloud and Data Center, Gitea ---
    ("gitlab/merge_request_hook_open.json", "gitlab", gitlab("Merge Request Hook"), request(
        "gitlab", "gitlab-org/hello-world", 1, "refs/merge-requests/1/head", "feature", "master",
        "c4c79227ed610f1151f05bbc5be33b4f340d39c8", "sytses", "update readme\n")),
    ("gitlab/merge_request_hook_reopen.json", "gitlab", gitlab("Merge Request Hook"), request(
        "gitlab", "gitlab-org/hello-world", 1, "refs/merge-requests/1/head", "feature", "master",
        "c4c79227ed610f1151f05bbc5be33b4f340d39c8", "sytses", "update readme\n")),
    ("gitlab/merge_request_hook_close.json", "gitlab", gitlab("Merge Request Hook"),
     ignored(f"pull request #1 'close': {GITLAB_BUILT}")),
    ("gitlab/merge_request_hook_merge.json", "gitlab", gitlab("Merge Request Hook"),
     ignored(f"pull request #1 'merge': {GITLAB_BUILT}")),
    ("gitlab/merge_request_hook_update_no_commits.json", "gitlab", gitlab("Merge Request Hook"),
     ignored(f"pull request #3 'update without new commits': {GITLAB_BUILT}")),
    # Cloud names the head commit by 12 hex digits and has no request refs: the head branch is fetched.
    ("bitbucket/cloud_pullrequest_created.json", "bitbucket", bitbucket_cloud("pullrequest:created"), request(
        "bitbucket", "brydzewski/foo", 1, "refs/heads/develop", "develop", "master", "507a576e59b3",
        "Brad Rydzewski", "Awesome new feature")),
    ("bitbucket/cloud_pullrequest_updated.json", "bitbucket", bitbucket_cloud("pullrequest:updated"), request(
        "bitbucket", "brydzewski/foo", 1, "refs/heads/develop", "develop", "master", "0704fc5beccc",
        "Brad Rydzewski", "Awesome new feature")),
    ("bitbucket/cloud_pullrequest_fulfilled.json", "bitbucket", bitbucket_cloud("pullrequest:fulfilled"),
     ignored(f"pull request #1 'pullrequest:fulfilled': {CLOUD_BUILT}")),
    ("bitbucket/cloud_pullrequest_declined.json", "bitbucket", bitbucket_cloud("pullrequest:rejected"),
     ignored(f"pull request #2 'pullrequest:rejected': {CLOUD_BUILT}")),
    ("bitbucket/server_pr_open.json", "bitbucket", bitbucket_server("pr:opened"), request(
        "bitbucket", "PRJ/my-repo", 2, "refs/pull-requests/2/from", "develop", "master",
        "208b0a5c05eddadad01f2aed8802fe0c3b3eaf5e", "Jane Citizen", "added LICENSE")),
    ("bitbucket/server_pr_from_ref_updated.json", "bitbucket", bitbucket_server("pr:from_ref_updated"), request(
        "bitbucket", "PRJ/my-repo", 2, "refs/pull-requests/2/from", "feature-2", "master",
        "c00d0f269a9844dd168f72f6a9d78a9cff49a318", "Jane Citizen", "added LICENSE",
        before="caf52ccb18c039cd9b930ed1f7b3edfb34cb92dd")),
    ("bitbucket/server_pr_merged.json", "bitbucket", bitbucket_server("pr:merged"),
     ignored(f"pull request #3 'pr:merged': {SERVER_BUILT}")),
    ("bitbucket/server_pr_declined.json", "bitbucket", bitbucket_server("pr:declined"),
     ignored(f"pull request #2 'pr:declined': {SERVER_BUILT}")),
    ("bitbucket/server_pr_modified_meta.json", "bitbucket", bitbucket_server("pr:modified"),
     ignored(f"pull request #6 'pr:modified': {SERVER_BUILT}")),
    ("gitea/pull_request_opened.json", "gitea", gitea("pull_request"), request(
        "gitea", "jcitizen/my-repo", 1, "refs/pull/1/head", "feature", "master",
        "2eba238e33607c1fa49253182e9fff42baafa1eb", "jcitizen", "Add License File")),
    ("gitea/pull_request_synchronized.json", "gitea", gitea("pull_request"), request(
        "gitea", "jcitizen/my-repo", 1, "refs/pull/1/head", "feature", "master",
        "2eba238e33607c1fa49253182e9fff42baafa1eb", "jcitizen", "Add License File")),
    ("gitea/pull_request_reopened.json", "gitea", gitea("pull_request"), request(
        "gitea", "jcitizen/my-repo", 1, "refs/pull/1/head", "feature", "master",
        "2eba238e33607c1fa49253182e9fff42baafa1eb", "jcitizen", "Add LICENSE File")),
    ("gitea/pull_request_closed.json", "gitea", gitea("pull_request"),
     ignored(f"pull request #1 'closed': {GITEA_BUILT}")),
    ("gitea/pull_request_edited.json", "gitea", gitea("pull_request"),
     ignored(f"pull request #1 'edited': {GITEA_BUILT}")),
    ("gitea/pull_request_merged.json", "gitea", gitea("pull_request"),
     ignored(f"pull request #1 'closed (merged)': {GITEA_BUILT}")),
    # --- Gitea ---
    # The documentation example's commit has no added/modified/removed keys.
    ("gitea/push_docs.json", "gitea", gitea("push"), (
        push("gitea", "gitea/webhooks", "refs/heads/develop", "branch", "develop",
             "bffeb74224043ba2feb48d137756c8a9331c449a", "gitea", "Webhooks Yay!", None),
    )),
    ("gitea/push_branch.json", "gitea", gitea("push"), (
        push("gitea", "gogits/hello-world", "refs/heads/master", "branch", "master",
             "4522cbcefc20728a5b72b3a86af35e608622c514", "unknwon", "Updated readme\n", ("README.md",)),
    )),
    ("gitea/create_tag.json", "gitea", gitea("create"),
     ignored("create of tag 'v1.0.0' is recorded, not built (the push event covers it)")),
    ("gitea/delete_branch.json", "gitea", gitea("delete"),
     ignored("delete of branch 'feature' is recorded, not built (the push event covers it)")),
]


def test_table_covers_every_fixture():
    on_disk = {f"{host}/{path.name}" for host in HOSTS for path in (FIXTURES / host).glob("*.json")}
    assert on_disk == {case[0] for case in CASES}


@pytest.mark.parametrize(("fixture", "provider", "headers", "expected"), CASES, ids=[case[0] for case in CASES])
def test_parse_fixture(fixture, provider, headers, expected):
    module = forge_for(provider)
    body = fixture_bytes(fixture)
    if all(isinstance(item, PushEvent) for item in expected):
        assert module.parse(headers, body) == expected
    else:
        reason, status = expected
        with pytest.raises(Ignored) as caught:
            module.parse(headers, body)
        assert (caught.value.reason, caught.value.status) == (reason, status)


# --- verify -----------------------------------------------------------------

GITHUB_KNOWN_SIGNATURE = "sha256=e3bfe744d4e2e29ed990bde8acfb8255ca51ef65f99657767989fb6349f32957"


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(provider: str, fixture: str, secret: str) -> dict[str, str]:
    """The signature/token headers the host sends for ``fixture`` with ``secret``."""
    body = fixture_bytes(fixture)
    if provider == "github":
        return {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body)}
    if provider == "gitlab":
        return {"X-Gitlab-Token": secret}
    if provider == "bitbucket":
        return {"X-Hub-Signature": "sha256=" + hex_hmac(secret, body)}
    return {"X-Gitea-Signature": hex_hmac(secret, body)}


SIGNED_FIXTURES = [
    ("github", "github/push_branch.json"),
    ("gitlab", "gitlab/push_hook.json"),
    ("bitbucket", "bitbucket/cloud_repo_push_branch.json"),
    ("bitbucket", "bitbucket/server_refs_changed_update.json"),
    ("gitea", "gitea/push_branch.json"),
]


def test_github_known_vector():
    headers = {"X-Hub-Signature-256": GITHUB_KNOWN_SIGNATURE}
    forge_for("github").verify(headers, fixture_bytes("github/push_branch.json"), "topsecret")
    assert signed("github", "github/push_branch.json", "topsecret") == headers


@pytest.mark.parametrize(("provider", "fixture"), SIGNED_FIXTURES)
def test_verify_accepts_the_right_secret(provider, fixture):
    forge_for(provider).verify(signed(provider, fixture, "topsecret"), fixture_bytes(fixture), "topsecret")


@pytest.mark.parametrize(("provider", "fixture"), SIGNED_FIXTURES)
def test_verify_rejects_a_wrong_secret(provider, fixture):
    with pytest.raises(BadSignature):
        forge_for(provider).verify(signed(provider, fixture, "wrong"), fixture_bytes(fixture), "topsecret")


@pytest.mark.parametrize(("provider", "fixture"), SIGNED_FIXTURES)
def test_verify_rejects_a_missing_header(provider, fixture):
    with pytest.raises(BadSignature):
        forge_for(provider).verify({"Content-Type": "application/json"}, fixture_bytes(fixture), "topsecret")


# GitLab's token does not cover the body, so it has no tampering case.
@pytest.mark.parametrize(("provider", "fixture"), [case for case in SIGNED_FIXTURES if case[0] != "gitlab"])
def test_verify_rejects_a_tampered_body(provider, fixture):
    headers = signed(provider, fixture, "topsecret")
    with pytest.raises(BadSignature):
        forge_for(provider).verify(headers, fixture_bytes(fixture) + b" ", "topsecret")


def test_bitbucket_signature_needs_its_prefix():
    body = fixture_bytes("bitbucket/cloud_repo_push_branch.json")
    with pytest.raises(BadSignature):
        forge_for("bitbucket").verify({"X-Hub-Signature": hex_hmac("topsecret", body)}, body, "topsecret")


def test_forgejo_signature_header():
    body = fixture_bytes("gitea/push_branch.json")
    forge_for("gitea").verify({"X-Forgejo-Signature": hex_hmac("topsecret", body)}, body, "topsecret")


# --- describe ---------------------------------------------------------------

DESCRIBE_CASES = [
    ("github", "github/push_branch.json", github("push"), HookInfo(
        "push", "ee8d97b4-1479-43f1-9cac-fbbd1b80da55", "Codertocat/Hello-World",
        "github:109948940:ee8d97b4-1479-43f1-9cac-fbbd1b80da55")),
    ("gitlab", "gitlab/push_hook.json", gitlab("Push Hook"), HookInfo(
        "Push Hook", "b2eecd3a-3ac9-489b-81d6-462ec4881ea5", "gitlab-org/hello-world",
        "gitlab:b2eecd3a-3ac9-489b-81d6-462ec4881ea5")),
    ("bitbucket", "bitbucket/cloud_repo_push_branch.json", bitbucket_cloud("repo:push"), HookInfo(
        "repo:push", "3a1c5d4e-5b6f-4a7b-8c9d-0e1f2a3b4c5d", "brydzewski/foo",
        "bitbucket:3a1c5d4e-5b6f-4a7b-8c9d-0e1f2a3b4c5d")),
    ("bitbucket", "bitbucket/server_refs_changed_update.json", bitbucket_server("repo:refs_changed"), HookInfo(
        "repo:refs_changed", "b6a2b3c4-1d2e-4f5a-9b8c-7d6e5f4a3b2c", "PRJ/my-repo",
        "bitbucket:b6a2b3c4-1d2e-4f5a-9b8c-7d6e5f4a3b2c")),
    ("gitea", "gitea/push_branch.json", gitea("push"), HookInfo(
        "push", "a4d1e2f3-0b9c-4d8e-a7f6-5e4d3c2b1a09", "gogits/hello-world",
        "gitea:a4d1e2f3-0b9c-4d8e-a7f6-5e4d3c2b1a09")),
]


@pytest.mark.parametrize(("provider", "fixture", "headers", "expected"), DESCRIBE_CASES,
                         ids=[case[1] for case in DESCRIBE_CASES])
def test_describe(provider, fixture, headers, expected):
    assert forge_for(provider).describe(headers, fixture_bytes(fixture)) == expected


def test_gitlab_describe_without_idempotency_key_keys_on_event_uuid_and_ref():
    headers = {k: v for k, v in gitlab("Push Hook").items() if k != "Idempotency-Key"}
    info = forge_for("gitlab").describe(headers, fixture_bytes("gitlab/push_hook.json"))
    assert info.delivery_id == "1671f880-67c6-45cb-9dfa-f4707face4ba"
    assert info.dedupe_key == "gitlab:1671f880-67c6-45cb-9dfa-f4707face4ba:refs/heads/master"


def test_describe_without_delivery_header_has_no_dedupe_key():
    for provider, fixture, _, _ in DESCRIBE_CASES:
        info = forge_for(provider).describe({}, fixture_bytes(fixture))
        assert (info.delivery_id, info.dedupe_key) == (None, None), provider


# --- behaviour the fixtures do not show -------------------------------------

def test_gitlab_system_hook_and_missing_header_use_object_kind():
    body = fixture_bytes("gitlab/push_hook.json")
    for headers in ({"X-Gitlab-Event": "System Hook"}, {}):
        (event,) = forge_for("gitlab").parse(headers, body)
        assert event.commit == "2adc9465c4edfc33834e173fe89436a7cb899a1d"
    with pytest.raises(Ignored, match="pull request event without an action: recorded, not built"):
        forge_for("gitlab").parse({"X-Gitlab-Event": "Merge Request Hook"}, body)
    merge_request = fixture_bytes("gitlab/merge_request_hook_open.json")
    for headers in ({"X-Gitlab-Event": "System Hook"}, {}):
        (event,) = forge_for("gitlab").parse(headers, merge_request)
        assert (event.pull_request, event.ref) == (1, "refs/merge-requests/1/head")


def test_requests_from_forks_are_marked_and_updates_carry_the_previous_head():
    payload = json.loads(fixture_bytes("github/pull_request_synchronize.json"))
    payload["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    (event,) = forge_for("github").parse(github("pull_request"), json.dumps(payload).encode())
    assert (event.from_fork, event.before) == (True, "f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    payload = json.loads(fixture_bytes("gitlab/merge_request_hook_open.json"))
    payload["object_attributes"].update(action="update", oldrev="a" * 40, source_project_id=99)
    (event,) = forge_for("gitlab").parse(gitlab("Merge Request Hook"), json.dumps(payload).encode())
    assert (event.from_fork, event.before) == (True, "a" * 40)
    payload = json.loads(fixture_bytes("bitbucket/server_pr_open.json"))
    payload["pullRequest"]["fromRef"]["repository"]["project"]["key"] = "~MALLORY"
    (event,) = forge_for("bitbucket").parse(bitbucket_server("pr:opened"), json.dumps(payload).encode())
    assert event.from_fork is True
    payload = json.loads(fixture_bytes("bitbucket/cloud_pullrequest_created.json"))
    payload["pullrequest"]["source"]["repository"]["full_name"] = "mallory/foo"
    with pytest.raises(Ignored, match="Bitbucket Cloud has no pull request refs"):
        forge_for("bitbucket").parse(bitbucket_cloud("pullrequest:created"), json.dumps(payload).encode())


def test_bitbucket_server_ping():
    with pytest.raises(Ignored) as caught:
        forge_for("bitbucket").parse({"X-Event-Key": "diagnostics:ping"}, b'{"test": true}')
    assert (caught.value.reason, caught.value.status) == ("ping", 200)


def test_forgejo_event_header():
    (event,) = forge_for("gitea").parse({"X-Forgejo-Event": "push"}, fixture_bytes("gitea/push_branch.json"))
    assert event.ref_name == "master"


def test_gitea_newer_payload_shape():
    base = json.loads(fixture_bytes("gitea/push_branch.json"))
    listed = base["commits"][0]
    other = dict(listed, id="1" * 40, message="older\n", modified=["b.txt"])
    # head_commit wins over the list; total_commits larger than the list -> files unknown.
    payload = dict(base, commits=[other, listed], total_commits=3,
                   head_commit=dict(listed, message="from head_commit\n"))
    (event,) = forge_for("gitea").parse(gitea("push"), json.dumps(payload).encode())
    assert (event.message, event.changed_files) == ("from head_commit\n", None)
    # Without head_commit, the listed commit whose id is `after`; complete list -> union of files.
    payload = dict(base, commits=[listed, other], total_commits=2)
    (event,) = forge_for("gitea").parse(gitea("push"), json.dumps(payload).encode())
    assert (event.message, event.changed_files) == ("Updated readme\n", ("README.md", "b.txt"))
    # `after` not listed: the last listed commit.
    payload = dict(base, commits=[dict(listed, id="2" * 40), other])
    (event,) = forge_for("gitea").parse(gitea("push"), json.dumps(payload).encode())
    assert (event.commit, event.message) == ("4522cbcefc20728a5b72b3a86af35e608622c514", "older\n")


def test_bitbucket_cloud_push_with_a_deletion_and_an_update_builds_the_update():
    updated = json.loads(fixture_bytes("bitbucket/cloud_repo_push_branch.json"))
    deleted = json.loads(fixture_bytes("bitbucket/cloud_repo_push_branch_deleted.json"))
    updated["push"]["changes"] = deleted["push"]["changes"] + updated["push"]["changes"]
    events = forge_for("bitbucket").parse(bitbucket_cloud("repo:push"), json.dumps(updated).encode())
    assert [(e.ref, e.commit) for e in events] == [("refs/heads/master", "141977fedf5cf35aa290ac87d4b5177ac4cd9de1")]
