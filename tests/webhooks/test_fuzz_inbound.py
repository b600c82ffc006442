"""Bad input never causes a 500 or a build: every inbound endpoint, fuzzed with mutated real payloads.

Property-based (Hypothesis, derandomized: CI runs the same examples every time). Each
example starts from a real body, tests/fixtures/ for the Git hosts and the
distribution registry, tests/fixtures/other_registries/ for Docker Hub, Quay, Harbor and ACR,
pointed at a repository that has a trigger here, and mutates it: values at random
JSON paths replaced by other types, keys deleted or added, huge strings, deep nesting,
NUL and lone surrogates; then the bytes: truncated, invalid UTF-8, random bytes,
10,000 levels of nesting, other encodings. Headers vary too: event names, content
types, delivery ids, signatures and tokens.

Properties:

* no answer is a 5xx;
* a body over ``BUILDHOOK_MAX_BODY_BYTES`` gets 413, on every endpoint;
* an unsigned or wrongly signed hook never creates a build;
* a validly signed mutated hook either queues builds of a hex commit id on a
  ``refs/heads/`` or ``refs/tags/`` ref, or is ignored or rejected with a 2xx or 4xx;
  either way the delivery is recorded;
* a registry notification without the right token gets 401; with it, 202 (each
  event recorded), 400 or 415.

No worker: the builds the fuzzing queues are marked skipped right away, so the
session's worker (started by the tests that run last) never picks them up.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from builder.db.models import Build, BuildState, Delivery, RegistryEvent
from tests.conftest import FIXTURES, signed_in

REGISTRY_DOCS = FIXTURES / "other_registries"
SECRET = "fuzz-inbound-secret"

# One trigger per repository; the fixtures are rewritten to name these.
REPOSITORIES = {
    "github": "fuzz-inbound/github",
    "gitlab": "fuzz-inbound/gitlab",
    "bitbucket-cloud": "fuzz-inbound/bitbucket-cloud",
    "bitbucket-server": "FUZZ/bitbucket-server",
    "gitea": "fuzz-inbound/gitea",
}

# fixture -> (endpoint provider, the event headers the host sends with it)
HOOK_CASES: dict[str, tuple[str, dict[str, str]]] = {
    "github/push_branch.json": ("github", {"X-GitHub-Event": "push"}),
    "github/push_branch_created.json": ("github", {"X-GitHub-Event": "push"}),
    "github/push_tag.json": ("github", {"X-GitHub-Event": "push"}),
    "github/push_branch_deleted.json": ("github", {"X-GitHub-Event": "push"}),
    "github/push_tag_deleted.json": ("github", {"X-GitHub-Event": "push"}),
    "github/ping.json": ("github", {"X-GitHub-Event": "ping"}),
    "github/create_tag.json": ("github", {"X-GitHub-Event": "create"}),
    "github/create_branch.json": ("github", {"X-GitHub-Event": "create"}),
    "github/pull_request_opened.json": ("github", {"X-GitHub-Event": "pull_request"}),
    "gitlab/push_hook.json": ("gitlab", {"X-Gitlab-Event": "Push Hook"}),
    "gitlab/push_hook_docs.json": ("gitlab", {"X-Gitlab-Event": "Push Hook"}),
    "gitlab/push_hook_branch_deleted.json": ("gitlab", {"X-Gitlab-Event": "Push Hook"}),
    "gitlab/tag_push_hook_create.json": ("gitlab", {"X-Gitlab-Event": "Tag Push Hook"}),
    "gitlab/tag_push_hook_docs.json": ("gitlab", {"X-Gitlab-Event": "Tag Push Hook"}),
    "gitlab/tag_push_hook_deleted.json": ("gitlab", {"X-Gitlab-Event": "Tag Push Hook"}),
    "bitbucket/cloud_repo_push_branch.json": ("bitbucket", {"X-Event-Key": "repo:push"}),
    "bitbucket/cloud_repo_push_tag_created.json": ("bitbucket", {"X-Event-Key": "repo:push"}),
    "bitbucket/cloud_repo_push_branch_deleted.json": ("bitbucket", {"X-Event-Key": "repo:push"}),
    "bitbucket/server_refs_changed_update.json": ("bitbucket", {"X-Event-Key": "repo:refs_changed"}),
    "bitbucket/server_refs_changed_tag_add.json": ("bitbucket", {"X-Event-Key": "repo:refs_changed"}),
    "bitbucket/server_refs_changed_branch_delete.json": ("bitbucket", {"X-Event-Key": "repo:refs_changed"}),
    "gitea/push_docs.json": ("gitea", {"X-Gitea-Event": "push"}),
    "gitea/push_branch.json": ("gitea", {"X-Gitea-Event": "push"}),
    "gitea/create_tag.json": ("gitea", {"X-Gitea-Event": "create"}),
    "gitea/delete_branch.json": ("gitea", {"X-Gitea-Event": "delete"}),
}

# Other event headers each host could send (and some it never would).
OTHER_EVENTS: dict[str, list[dict[str, str]]] = {
    "github": [{"X-GitHub-Event": e} for e in ("push", "ping", "create", "delete", "release", "PUSH", "")],
    "gitlab": [{"X-Gitlab-Event": e} for e in ("Push Hook", "Tag Push Hook", "System Hook", "Merge Request Hook", "")],
    "bitbucket": [{"X-Event-Key": e} for e in ("repo:push", "repo:refs_changed", "diagnostics:ping",
                                               "pullrequest:created", "")],
    "gitea": [{"X-Gitea-Event": "push"}, {"X-Forgejo-Event": "push"}, {"X-Gogs-Event": "push"},
              {"X-GitHub-Event": "push"}, {"X-Gitea-Event": "create"}, {"X-Gitea-Event": "delete"},
              {"X-Gitea-Event": "release"}],
}

V1 = "application/vnd.docker.distribution.events.v1+json"
V2 = "application/vnd.docker.distribution.events.v2+json"
# fixture -> (endpoint, the content type the registry sends)
REGISTRY_CASES: dict[str, tuple[str, str]] = {
    "registry/distribution_docs_push_envelope.json": ("/registry/events", V1),
    "registry/distribution_docs_pull_envelope.json": ("/registry/events", V1),
    "registry/keel_registry_push_manifest_tag.json": ("/registry/events", V2),
    "dockerhub_docs_push.json": ("/registry/hooks/dockerhub", "application/json"),
    "quay_docs_repo_push.json": ("/registry/hooks/quay", "application/json"),
    "harbor_docs_push_artifact.json": ("/registry/hooks/harbor", "application/json"),
    "acr_docs_push.json": ("/registry/hooks/acr", "application/json"),
    "acr_docs_delete.json": ("/registry/hooks/acr", "application/json"),
}
ENDPOINTS = ["/hooks/github", "/hooks/gitlab", "/hooks/bitbucket", "/hooks/gitea", "/registry/events",
             "/registry/hooks/dockerhub", "/registry/hooks/quay", "/registry/hooks/harbor", "/registry/hooks/acr"]

CJK_1000 = "".join(map(chr, range(0x4E00, 0x4E00 + 1000)))  # 3,000 bytes that do not compress
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
FUZZ = hypothesis_settings(deadline=None, derandomize=True, database=None, print_blob=True,
                           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                  HealthCheck.data_too_large, HealthCheck.large_base_example])


# --- the bodies ---------------------------------------------------------------------------


def hook_payload(fixture: str) -> dict[str, Any]:
    """The real payload, naming the repository of its provider's fuzz trigger."""
    payload = json.loads((FIXTURES / fixture).read_text())
    provider = HOOK_CASES[fixture][0]
    if provider == "gitlab":
        payload["project"]["path_with_namespace"] = REPOSITORIES["gitlab"]
    elif fixture.startswith("bitbucket/server_"):
        payload["repository"]["project"]["key"], payload["repository"]["slug"] = \
            REPOSITORIES["bitbucket-server"].split("/")
    elif provider == "bitbucket":
        payload["repository"]["full_name"] = REPOSITORIES["bitbucket-cloud"]
    else:
        payload["repository"]["full_name"] = REPOSITORIES[provider]
    return payload


def registry_payload(fixture: str) -> dict[str, Any]:
    """The real notification, naming a repository of its own (so its events are no other test's)."""
    path = FIXTURES / fixture if fixture.startswith("registry/") else REGISTRY_DOCS / fixture
    payload = json.loads(path.read_text())
    source = REGISTRY_CASES[fixture][0].rsplit("/", 1)[1]
    namespace, name = "fuzz-inbound", source
    repository = f"{namespace}/{name}"
    if fixture.startswith("registry/"):
        for event in payload["events"]:
            event["target"]["repository"] = repository
    elif source == "dockerhub":
        payload["repository"].update(repo_name=repository, namespace=namespace, name=name)
    elif source == "quay":
        payload.update(repository=repository, namespace=namespace, name=name, docker_url=f"quay.io/{repository}")
    elif source == "harbor":
        payload["event_data"]["repository"].update(repo_full_name=repository, namespace=namespace, name=name)
        for resource in payload["event_data"]["resources"]:
            resource["resource_url"] = f"hub.harbor.com/{repository}:{resource['tag']}"
    else:
        payload["target"]["repository"] = repository
    return payload


# A value a mutation can put anywhere: every JSON type, and strings parsers trip over.
SPECIAL_STRINGS = [
    "", " ", "0" * 40, "f" * 40, "A" * 40, "a" * 64, "a" * 39, "g" * 40, "refs/heads/", "refs/tags/",
    "refs/heads/main", "refs/tags/v1.2.3", "refs/heads/../x", "refs/heads/a b", "refs/heads/a\x00b",
    "refs/heads/" + "é" * 700, "refs/heads/x\ud800", "refs/tags/.lock", "\x00", "\ud800", "x\udfff", "\u202e",
    "😀", "{{7*7}}", "%s%n", "../../etc/passwd", "[skip ci]", "null", "true", "push", "Push Hook", "repo:push",
    "PUSH_ARTIFACT", "sha256:" + "0" * 64, "sha256:", "127.0.0.1:1", "latest", "-x", ".x", "UPDATE", "DELETE",
    "branch", "tag", "a/b", "A/B", "fuzz-inbound/github",
]
KEYS = ["id", "ref", "after", "before", "commits", "head_commit", "repository", "full_name", "name", "type",
        "hash", "target", "new", "old", "changes", "tag", "action", "events", "added", "modified", "removed",
        "message", "author", "toHash", "fromHash", "checkout_sha", "updated_tags", "resources", "push_data",
        "event_data", "specversion", "data", "deleted", "created", "total_commits", "total_commits_count"]
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([10**30, -(2**63), 2**64]),
    st.floats(),  # NaN and Infinity too: Python's json reads them
    st.text(max_size=20), st.sampled_from(SPECIAL_STRINGS),
    st.text(alphabet="0123456789abcdefABCDEF", max_size=70),
)
junk = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
NEST = "__fuzz_nest_{}__"  # replaced by N levels of nesting once serialized (no deep recursion here)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    found = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return found
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def containers(value: Any, prefix: tuple = ()) -> list[tuple]:
    """The paths of ``value``'s dicts and lists, itself included (the empty path)."""
    found = [prefix] if isinstance(value, (dict, list)) else []
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(containers(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(containers(child, (*prefix, index)))
    return found


def at(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document


def apply_edit(document: Any, edit: tuple) -> None:
    op, path, *args = edit
    if op == "add":  # a key or an item added to the container at ``path``
        container = at(document, path)
        if isinstance(container, dict):
            container[args[0]] = copy.deepcopy(args[1])
        else:
            container.append(copy.deepcopy(args[1]))
        return
    parent, key = at(document, path[:-1]), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "set":  # a copy: later edits change the document, never the recorded edit
        parent[key] = copy.deepcopy(args[0])
    elif op == "huge":  # a long string of one character
        parent[key] = args[1] * args[0]
    elif op == "nest":
        parent[key] = NEST.format(args[0])
    elif op == "repeat":  # a list item many times over (many changes, many commits)
        parent[key] = [copy.deepcopy(parent[key]) for _ in range(args[0])]
    else:
        raise AssertionError(op)


def serialize(document: Any, edits: list[tuple], raw: tuple | None, ascii_only: bool = True) -> bytes:
    """The mutated document as the bytes sent, before any byte-level mutation, then that one."""
    document = copy.deepcopy(document)
    for edit in edits:
        apply_edit(document, edit)
    text = json.dumps(document, ensure_ascii=ascii_only)
    for depth in re.findall(r'"__fuzz_nest_(\d+)__"', text):
        n = int(depth)
        text = text.replace(f'"{NEST.format(depth)}"', "[" * n + '"deep"' + "]" * n, 1)
    body = text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8
    if raw is None:
        return body
    kind, *args = raw
    if kind == "truncate":
        return body[: int(len(body) * args[0])]
    if kind == "insert":
        cut = int(len(body) * args[0])
        return body[:cut] + args[1] + body[cut:]
    if kind == "replace":
        return args[0]
    if kind == "encode":
        return text.encode(args[0], "surrogatepass")
    raise AssertionError(kind)


DEEP = 10_000
RAW_BODIES = [
    b"", b" ", b"null", b"[]", b'"x"', b"1", b"{}", b"{", b"\xff\xfe", b"\x00" * 8, b"NaN",
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b'{"repository": {"full_name": "fuzz-inbound/github"}, "x": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    b'{"events": ' + b"[" * DEEP + b"]" * DEEP + b"}",
]


@st.composite
def mutations(draw, document: Any) -> tuple[list[tuple], tuple | None, bool]:
    """Edits to apply to ``document`` in order, a byte-level mutation (or None), and the JSON flavour."""
    document = copy.deepcopy(document)
    edits: list[tuple] = []
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "delete", "huge", "nest", "add", "repeat"]))
        if op == "add":
            path = draw(st.sampled_from(containers(document)))
            edit: tuple = ("add", path, draw(st.sampled_from(KEYS)), draw(junk))
        else:
            choices = paths(document)
            if not choices:
                continue
            path = draw(st.sampled_from(choices))
            if op == "set":
                edit = ("set", path, draw(junk))
            elif op == "delete":
                edit = ("delete", path)
            elif op == "huge":
                edit = ("huge", path, draw(st.sampled_from([300, 5000, 200_000])), draw(st.sampled_from("a0é\x00/")))
            elif op == "nest":
                edit = ("nest", path, draw(st.sampled_from([2, 60, 400, 900, DEEP])))
            else:
                if not isinstance(at(document, path[:-1]), list):
                    continue
                edit = ("repeat", path, draw(st.sampled_from([2, 30])))
        apply_edit(document, edit)
        edits.append(edit)
    raw = draw(st.one_of(
        st.none(), st.none(), st.none(), st.none(),
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("insert"), st.floats(0, 1),
                  st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\x80"])
                  | st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("replace"), st.sampled_from(RAW_BODIES) | st.binary(max_size=64)),
        st.tuples(st.just("encode"), st.sampled_from(["utf-16", "utf-32", "utf-8-sig"])),
    ))
    return edits, raw, draw(st.booleans())


# Header values: what a client can put in an HTTP header (no CR/LF).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=40)
content_types = st.sampled_from([
    None, "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz", V1, V2, "application/cloudevents+json", "ÿ/ÿ", "",
])
delivery_ids = st.one_of(st.none(), st.just("fuzz-duplicate"), header_text,
                         st.sampled_from(["x" * 300, "y" * 700]))


# --- the triggers and what happened -------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_triggers(app, admin_token) -> dict[str, int]:
    client = signed_in(app.test_client(), admin_token)
    made = {}
    for name, repository in REPOSITORIES.items():
        provider = name.split("-")[0]
        response = client.post("/api/triggers", json={
            "provider": provider, "repository": repository, "clone_url": "file:///nonexistent/fuzz.git",
            "secret": SECRET, "image": f"fuzz/{name}", "default_branch": "master"})
        assert response.status_code == 201, response.json
        made[name] = response.json["id"]
    return made


def build_count(app, trigger_ids) -> int:
    with app.extensions["buildhook"].sessions() as session:
        return session.scalar(select(func.count(Build.id)).where(Build.trigger_id.in_(list(trigger_ids))))


def park_builds(app, trigger_ids) -> None:
    """Fuzzed builds never run: end them as skipped before any worker sees them queued."""
    with app.extensions["buildhook"].sessions() as session:
        session.execute(update(Build).where(Build.trigger_id.in_(list(trigger_ids)),
                                            Build.state == BuildState.QUEUED.value)
                        .values(state=BuildState.SKIPPED.value, reason="fuzz test"))
        session.commit()


def recorded_delivery(app, response) -> Delivery:
    delivery_id = (response.get_json(silent=True) or {}).get("delivery")
    assert isinstance(delivery_id, int), (response.status_code, response.data[:300])
    with app.extensions["buildhook"].sessions() as session:
        delivery = session.get(Delivery, delivery_id)
    assert delivery is not None
    assert delivery.status_code == response.status_code
    return delivery


def sign(provider: str, body: bytes, secret: str, signature_header: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if provider == "gitlab":
        return {"X-Gitlab-Token": secret}
    if provider == "gitea":
        return {signature_header: digest}
    if provider == "github":
        return {"X-Hub-Signature-256": "sha256=" + digest}
    return {"X-Hub-Signature": "sha256=" + digest}


def hook_headers(provider: str, event: dict[str, str] | None, content_type: str | None, delivery: str | None,
                 hook_id: str) -> dict[str, str]:
    headers = {"Authorization": ""}  # not the test client's API token
    headers.update(event or {})
    if content_type is not None:
        headers["Content-Type"] = content_type
    if delivery is not None:
        name = {"github": "X-GitHub-Delivery", "gitlab": "Idempotency-Key", "gitea": "X-Gitea-Delivery",
                "bitbucket": "X-Request-UUID"}[provider]
        headers[name] = delivery
        if provider == "gitlab":
            headers["X-Gitlab-Event-UUID"] = delivery
    if provider == "github":
        headers["X-GitHub-Hook-ID"] = hook_id
    return headers


def events_for(fixture: str):
    provider, event = HOOK_CASES[fixture]
    return st.one_of(st.just(event), st.just(event), st.sampled_from(OTHER_EVENTS[provider]), st.none(),
                     header_text.map(lambda value: {next(iter(event)): value}))


@st.composite
def hook_requests(draw):
    fixture = draw(st.sampled_from(sorted(HOOK_CASES)))
    edits, raw, ascii_only = draw(mutations(hook_payload(fixture)))
    return {
        "fixture": fixture, "edits": edits, "raw": raw, "ascii_only": ascii_only,
        "event": draw(events_for(fixture)), "content_type": draw(content_types), "delivery": draw(delivery_ids),
        "hook_id": draw(st.sampled_from(["4242", "", "z" * 600])),
        "signature_header": draw(st.sampled_from(["X-Gitea-Signature", "X-Forgejo-Signature"])),
    }


def hook(fixture: str, edits=(), raw=None, *, ascii_only=True, event=None, content_type="application/json",
         delivery=None, hook_id="4242", signature_header="X-Gitea-Signature") -> dict[str, Any]:
    """One hook request, written out (for ``@example``)."""
    return {"fixture": fixture, "edits": list(edits), "raw": raw, "ascii_only": ascii_only,
            "event": event if event is not None else HOOK_CASES[fixture][1], "content_type": content_type,
            "delivery": delivery, "hook_id": hook_id, "signature_header": signature_header}


# --- the properties -------------------------------------------------------------------------------


@hypothesis_settings(FUZZ, max_examples=400)
@given(request=hook_requests())
@example(request=hook("github/push_branch.json"))
@example(request=hook("bitbucket/server_refs_changed_update.json"))
# Regressions, each a 500 or a bad build before the fix:
# a lone surrogate (invalid UTF-8 in the body) in the repository name, then in a commit message;
@example(request=hook("gitea/create_tag.json", raw=("insert", 0.328125, b"\xed\xa0\x80"), ascii_only=False))
@example(request=hook("github/push_branch.json", [("set", ("repository", "full_name"), "fuzz-inbound/github\ud800")]))
@example(request=hook("github/push_branch.json", [("set", ("head_commit", "message"), "fix \ud800")]))
# NUL in a commit message (PostgreSQL stores no NUL in text);
@example(request=hook("github/push_branch.json", [("set", ("head_commit", "message"), "a\x00b")]))
# a commit message that is not a string; a list of added files that is not a list;
@example(request=hook("github/push_branch.json", [("set", ("head_commit", "message"), {"a": 1})]))
@example(request=hook("github/push_branch.json", [("set", ("commits", 0, "added"), 1)]))
# a commit id that is not one (it was built as given);
@example(request=hook("github/push_branch.json", [("set", ("head_commit", "id"), "not-a-sha")]))
@example(request=hook("bitbucket/server_refs_changed_update.json",
                      [("set", ("changes", 0, "toHash"), "--upload-pack=x")]))
# Bitbucket Cloud: an unhashable ref type; Gitea: commits that are a number;
@example(request=hook("bitbucket/cloud_repo_push_branch.json", [("set", ("push", "changes", 0, "new", "type"), [])]))
@example(request=hook("bitbucket/cloud_repo_push_branch_deleted.json",
                      [("set", ("push", "changes", 0, "old", "type"), {})]))
@example(request=hook("gitea/push_branch.json", [("set", ("commits",), 5)]))
# values longer than their columns (PostgreSQL refuses them; SQLite stored them): before, author,
# the event header, the delivery id, the dedupe key, the ref (and a ref too big for its index: a 503);
@example(request=hook("github/push_branch.json", [("set", ("before",), "a" * 100)]))
@example(request=hook("github/push_branch.json", [("huge", ("head_commit", "author", "username"), 300, "a")]))
@example(request=hook("github/push_branch.json", event={"X-GitHub-Event": "e" * 65}))
@example(request=hook("github/push_branch.json", delivery="x" * 300))
@example(request=hook("github/push_branch.json", delivery="y" * 700, hook_id="z" * 600))
@example(request=hook("github/push_branch.json", [("set", ("ref",), "refs/heads/" + "a" * 1100)]))
@example(request=hook("gitlab/push_hook.json", [("set", ("ref",), "refs/heads/x" + CJK_1000)]))
@example(request=hook("gitea/push_branch.json", [("set", ("ref",), "refs/heads/a\x00b")]))
def test_a_validly_signed_mutated_hook_builds_a_real_commit_or_is_answered_and_recorded(
        app, client, fuzz_triggers, request):
    provider = HOOK_CASES[request["fixture"]][0]
    body = serialize(hook_payload(request["fixture"]), request["edits"], request["raw"], request["ascii_only"])
    headers = hook_headers(provider, request["event"], request["content_type"], request["delivery"],
                           request["hook_id"])
    headers.update(sign(provider, body, SECRET, request["signature_header"]))
    before = build_count(app, fuzz_triggers.values())

    response = client.post(f"/hooks/{provider}", data=body, headers=headers)

    assert response.status_code < 500, response.data[:500]
    assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500
    if len(body) > app.extensions["buildhook"].settings.max_body_bytes:
        assert response.status_code == 413
    delivery = recorded_delivery(app, response)
    answer = response.get_json()
    if response.status_code == 202 and answer["outcome"] == "accepted":
        assert answer["builds"] and delivery.outcome == "accepted"
        with app.extensions["buildhook"].sessions() as session:
            builds = list(session.scalars(select(Build).where(Build.id.in_(answer["builds"]))))
        assert len(builds) == len(answer["builds"])
        for build in builds:
            assert COMMIT.fullmatch(build.commit), build.commit
            assert build.ref.startswith(("refs/heads/", "refs/tags/")), build.ref
            assert build.trigger_id in fuzz_triggers.values()
    else:
        assert build_count(app, fuzz_triggers.values()) == before
    park_builds(app, fuzz_triggers.values())


WRONG_SIGNATURES = ["missing", "empty", "wrong-secret", "other-body", "garbage", "prefix-only", "sha1",
                    "truncated"]


def wrong_signature(provider: str, body: bytes, original: bytes, mode: str,
                    signature_header: str) -> dict[str, str]:
    if mode == "missing":
        return {}
    valid = sign(provider, body, SECRET, signature_header)
    name = next(iter(valid))
    if mode == "empty":
        return {name: ""}
    if mode == "wrong-secret":
        return sign(provider, body, SECRET + "-not", signature_header)
    if mode == "other-body":
        return sign(provider, original, SECRET, signature_header)
    if mode == "garbage":
        return {name: "sha256=" + "zz" * 32}
    if mode == "prefix-only":
        return {name: "sha256="}
    if mode == "sha1":
        return {name: "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()}
    if mode == "truncated":
        return {name: valid[name][:-1]}
    raise AssertionError(mode)


@hypothesis_settings(FUZZ, max_examples=200)
@given(request=hook_requests(), mode=st.sampled_from(WRONG_SIGNATURES))
@example(request=hook("github/push_branch.json"), mode="missing")
@example(request=hook("gitlab/push_hook.json"), mode="truncated")
def test_an_unsigned_or_wrongly_signed_hook_never_builds(app, client, fuzz_triggers, request, mode):
    provider = HOOK_CASES[request["fixture"]][0]
    original = serialize(hook_payload(request["fixture"]), [], None)
    body = serialize(hook_payload(request["fixture"]), request["edits"], request["raw"], request["ascii_only"])
    if mode == "other-body":  # GitLab's token is the same for every body: there it is no wrong signature
        assume(body != original and provider != "gitlab")
    headers = hook_headers(provider, request["event"], request["content_type"], request["delivery"],
                           request["hook_id"])
    headers.update(wrong_signature(provider, body, original, mode, request["signature_header"]))
    before = build_count(app, fuzz_triggers.values())

    response = client.post(f"/hooks/{provider}", data=body, headers=headers)

    assert response.status_code < 500, response.data[:500]
    assert response.status_code in (202, 400, 401, 413), response.get_json()
    if len(body) > app.extensions["buildhook"].settings.max_body_bytes:
        assert response.status_code == 413
    if response.status_code == 202:
        assert response.get_json()["outcome"] == "no_trigger"
    recorded_delivery(app, response)
    assert build_count(app, fuzz_triggers.values()) == before


@st.composite
def registry_requests(draw):
    fixture = draw(st.sampled_from(sorted(REGISTRY_CASES)))
    edits, raw, ascii_only = draw(mutations(registry_payload(fixture)))
    return {
        "fixture": fixture, "edits": edits, "raw": raw, "ascii_only": ascii_only,
        "content_type": draw(st.one_of(st.just(REGISTRY_CASES[fixture][1]), content_types)),
        "auth": draw(st.sampled_from(["header", "header", "query", "missing", "wrong", "empty", "basic",
                                      "wrong-query"])),
        "event_id": draw(st.sampled_from(["fresh", "fresh", "repeat"])),
    }


def registry(fixture: str, edits=(), raw=None, *, content_type=None, auth="header", ascii_only=True,
             event_id="fresh") -> dict[str, Any]:
    """One registry notification, written out (for ``@example``)."""
    return {"fixture": fixture, "edits": list(edits), "raw": raw, "ascii_only": ascii_only,
            "content_type": content_type or REGISTRY_CASES[fixture][1], "auth": auth, "event_id": event_id}


def event_ids(fixture: str, payload: dict[str, Any], mode: str) -> dict[str, Any]:
    """New event ids (and timestamps, where the id is derived from them): unique ones, so events are
    not duplicates, or one id used again and again, so they are."""
    marker = uuid.uuid4().hex if mode == "fresh" else "f" * 32
    if fixture.startswith("registry/"):
        for event in payload["events"]:
            event["id"] = marker
    elif fixture.startswith("acr_"):
        payload["id"] = marker
    elif fixture.startswith("dockerhub_"):
        payload["push_data"]["pushed_at"] = int(marker[:8], 16)
    elif fixture.startswith("harbor_"):
        payload["occur_at"] = int(marker[:8], 16)
    return payload


def registry_count(app) -> int:
    with app.extensions["buildhook"].sessions() as session:
        return session.scalar(select(func.count(RegistryEvent.id)))


@hypothesis_settings(FUZZ, max_examples=300)
@given(request=registry_requests())
@example(request=registry("registry/keel_registry_push_manifest_tag.json"))
@example(request=registry("quay_docs_repo_push.json", auth="missing"))
# Regressions, each a 500 on PostgreSQL before the fix: an action longer than its column,
# an event id with NUL, a CloudEvents id too long once "#n" is added for the second resource.
@example(request=registry("acr_docs_delete.json", [("set", ("action",), "x" * 100)]))
@example(request=registry("acr_docs_push.json", [("set", ("id",), "a\x00b")]))
@example(request=registry("harbor_docs_push_artifact.json", [
    ("add", (), "specversion", "1.0"), ("add", (), "id", "i" * 255),
    ("add", (), "data", {"resources": [{"tag": "a", "resource_url": "h.example/fuzz/harbor:a"},
                                       {"tag": "b", "resource_url": "h.example/fuzz/harbor:b"}],
                         "repository": {"repo_full_name": "fuzz/harbor"}})]))
def test_a_mutated_registry_notification_is_answered_and_recorded_never_a_500(app, client, settings, request):
    endpoint = REGISTRY_CASES[request["fixture"]][0]
    payload = registry_payload(request["fixture"])
    payload = event_ids(request["fixture"], payload, request["event_id"])
    body = serialize(payload, request["edits"], request["raw"], request["ascii_only"])
    token = settings.registry_events_token
    headers = {"Authorization": ""}  # not the test client's API token
    if request["content_type"] is not None:
        headers["Content-Type"] = request["content_type"]
    path = endpoint
    good = request["auth"] in ("header", "query")
    if request["auth"] == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif request["auth"] == "query":
        path = f"{endpoint}?token={token}"
    elif request["auth"] == "wrong":
        headers["Authorization"] = f"Bearer {token}x"
    elif request["auth"] == "empty":
        headers["Authorization"] = "Bearer "
    elif request["auth"] == "basic":
        headers["Authorization"] = "Basic " + token
    elif request["auth"] == "wrong-query":
        path = f"{endpoint}?token={token[:-1]}"
    before = registry_count(app)

    response = client.post(path, data=body, headers=headers)

    assert response.status_code < 500, response.data[:500]
    if len(body) > settings.max_body_bytes:
        assert response.status_code == 413
        return
    if not good:
        assert response.status_code == 401
        assert registry_count(app) == before
        return
    assert response.status_code in (202, 400, 415), response.get_json()
    if response.status_code == 202:
        answer = response.get_json()
        assert all(isinstance(answer[key], int) for key in ("accepted", "ignored", "duplicates"))
        assert registry_count(app) == before + answer["accepted"] + answer["ignored"]


@hypothesis_settings(FUZZ, max_examples=30)
@given(endpoint=st.sampled_from(ENDPOINTS), extra=st.integers(-2, 4096), signed=st.booleans())
@example(endpoint="/hooks/github", extra=1, signed=True)
@example(endpoint="/registry/events", extra=1, signed=False)
def test_a_body_over_the_size_limit_gets_413(app, client, settings, fuzz_triggers, endpoint, extra, signed):
    limit = settings.max_body_bytes
    body = (b'{"repository": {"full_name": "fuzz-inbound/github"}, "x": "' + b"a" * (limit + extra))[: limit + extra]
    headers = {"Authorization": "", "Content-Type": "application/json"}
    if endpoint.startswith("/hooks/") and signed:
        provider = endpoint.rsplit("/", 1)[1]
        headers.update(OTHER_EVENTS[provider][0])
        headers.update(sign(provider, body, SECRET, "X-Gitea-Signature"))
    elif signed:
        headers["Authorization"] = f"Bearer {settings.registry_events_token}"
        headers["Content-Type"] = V1
    before = build_count(app, fuzz_triggers.values())

    response = client.post(endpoint, data=body, headers=headers)

    assert response.status_code < 500
    if len(body) > limit:
        assert response.status_code == 413, response.get_json()
        if endpoint.startswith("/hooks/"):
            assert recorded_delivery(app, response).outcome == "rejected"
    else:
        assert response.status_code != 413
    assert build_count(app, fuzz_triggers.values()) == before
