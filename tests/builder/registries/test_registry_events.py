"""Registry notifications through builder.registries' pure parsers.

The distribution fixtures (tests/fixtures/registry/) and the
documentation-shaped payloads of the other registries (tests/fixtures/other_registries/)
are checked against hand-written expected results; a seeded fuzz test checks
that mutated payloads give a list or ``InputError`` and nothing else.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from builder.errors import InputError
from builder.registries import PARSERS, IgnoredEvent, ImagePushed
from builder.registries.common import derived_id
from tests.payloads import FIXTURES

REGISTRY_FIXTURES = FIXTURES / "registry"
DATA = FIXTURES / "other_registries"

EVENTS_V1 = "application/vnd.docker.distribution.events.v1+json"
EVENTS_V2 = "application/vnd.docker.distribution.events.v2+json"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def registry_headers(content_type: str = EVENTS_V1) -> dict[str, str]:
    """What registry:2 sends (plus the Authorization header an endpoint is usually configured with)."""
    return {
        "Content-Type": content_type,
        "Authorization": "Bearer s3cret",
        "User-Agent": "Go-http-client/1.1",
    }


JSON_HEADERS = {"Content-Type": "application/json", "User-Agent": "test"}


def shared(name: str) -> bytes:
    return (REGISTRY_FIXTURES / name).read_bytes()


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# --- the shared distribution fixtures ----------------------------------------------------

SHARED_EXPECTED: dict[str, list[Any]] = {
    "distribution_docs_push_envelope.json": [
        IgnoredEvent("asdf-asdf-asdf-asdf-0", "push", "library/test", "manifest push without a tag"),
        IgnoredEvent("asdf-asdf-asdf-asdf-1", "push", "library/test", "layer blob push (no manifest)"),
        IgnoredEvent("asdf-asdf-asdf-asdf-2", "push", "library/test", "layer blob push (no manifest)"),
    ],
    "distribution_docs_pull_envelope.json": [
        IgnoredEvent("320678d8-ca14-430f-8bb6-4ca139cd83f7", "pull", "hello-world", "pull events are not deployed"),
    ],
    "keel_registry_push_manifest_tag.json": [
        ImagePushed(
            source="distribution",
            event_id="d83e8796-7ba5-46ad-b239-d88473e21b2b",
            registry="registry.git.erxes.io",
            repository="foo/bar",
            tag="1.6.1",
            digest="sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d",
            media_type=MANIFEST_V2,
            pushed_at="2018-10-11T13:53:21.859222576Z",
            actor="foo",
        ),
    ],
}


def test_every_shared_registry_fixture_has_expectations() -> None:
    assert sorted(path.name for path in REGISTRY_FIXTURES.glob("*.json")) == sorted(SHARED_EXPECTED)


@pytest.mark.parametrize(
    "content_type",
    [EVENTS_V1, EVENTS_V2, "application/json", "Application/JSON; charset=utf-8"],
)
@pytest.mark.parametrize("name", sorted(SHARED_EXPECTED))
def test_shared_distribution_fixture(name: str, content_type: str) -> None:
    result = PARSERS["distribution"].parse(registry_headers(content_type), shared(name))
    assert result == SHARED_EXPECTED[name]


# --- payloads shaped as each registry documents them -------------------------------------

DOCS_CASES = [
    pytest.param(
        "dockerhub",
        "dockerhub_docs_push.json",
        [
            ImagePushed(
                source="dockerhub",
                event_id=derived_id("dockerhub", "svendowideit/testhook", "latest", None, "1417566161"),
                registry="docker.io",
                repository="svendowideit/testhook",
                tag="latest",
                digest=None,
                media_type=None,
                pushed_at="1417566161",
                actor="trustedbuilder",
            )
        ],
        id="dockerhub",
    ),
    pytest.param(
        "quay",
        "quay_docs_repo_push.json",
        [
            ImagePushed(
                source="quay",
                event_id=derived_id("quay", "dgangaia/test", "latest", None, None),
                registry="quay.io",
                repository="dgangaia/test",
                tag="latest",
                digest=None,
                media_type=None,
                pushed_at=None,
                actor=None,
            )
        ],
        id="quay",
    ),
    pytest.param(
        "harbor",
        "harbor_docs_push_artifact.json",
        [
            ImagePushed(
                source="harbor",
                event_id=derived_id(
                    "harbor",
                    "test-webhook/debian",
                    "latest",
                    "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
                    "1586922308",
                ),
                registry="hub.harbor.com",
                repository="test-webhook/debian",
                tag="latest",
                digest="sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
                media_type=None,
                pushed_at="1586922308",
                actor="admin",
            )
        ],
        id="harbor",
    ),
    pytest.param(
        "acr",
        "acr_docs_push.json",
        [
            ImagePushed(
                source="acr",
                event_id="cb8c3971-9adc-488b-bdd8-43cbb4974ff5",
                registry="myregistry.azurecr.io",
                repository="hello-world",
                tag="v1",
                digest="sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
                media_type=MANIFEST_V2,
                pushed_at="2017-11-17T16:52:01.343145347Z",
                actor=None,
            )
        ],
        id="acr-push",
    ),
    pytest.param(
        "acr",
        "acr_docs_delete.json",
        [
            IgnoredEvent(
                "afc359ce-df7f-4e32-bdde-1ff8aa80927b", "delete", "hello-world", "delete events are not deployed"
            )
        ],
        id="acr-delete",
    ),
]


@pytest.mark.parametrize("parser, name, expected", DOCS_CASES)
def test_documented_payload(parser: str, name: str, expected: list[Any]) -> None:
    assert PARSERS[parser].parse(JSON_HEADERS, data(name)) == expected


def test_every_data_file_is_covered() -> None:
    covered = {param.values[1] for param in DOCS_CASES}
    assert covered == {path.name for path in DATA.glob("*.json")}


# --- distribution: envelopes mixing several events ---------------------------------------


def dist_event(event_id: str, action: str, **target: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "timestamp": "2024-05-01T10:00:00.123456789Z",
        "action": action,
        "target": {"repository": "acme/widget", **target},
        "request": {"id": "r1", "addr": "10.0.0.9", "host": "registry.example.com:5000", "method": "PUT"},
        "actor": {"name": "ci-bot"},
        "source": {"addr": "registry-0:5000", "instanceID": "i-1"},
    }


def pushed(event_id: str, tag: str, digest: str | None, media_type: str | None, **overrides: Any) -> ImagePushed:
    fields = {
        "source": "distribution",
        "event_id": event_id,
        "registry": "registry.example.com:5000",
        "repository": "acme/widget",
        "tag": tag,
        "digest": digest,
        "media_type": media_type,
        "pushed_at": "2024-05-01T10:00:00.123456789Z",
        "actor": "ci-bot",
    }
    fields.update(overrides)
    return ImagePushed(**fields)


def test_mixed_envelope_keeps_event_order_and_decides_each_event() -> None:
    """A multi-arch push: layers, per-platform manifests by digest, then the tagged index, among others."""
    events = [
        dist_event("e1", "push", mediaType=LAYER, digest=DIGEST_A, url="https://r/v2/acme/widget/blobs/x"),
        dist_event("e2", "push", mediaType="application/octet-stream", digest=DIGEST_A),
        dist_event("e3", "push", mediaType="application/vnd.docker.container.image.v1+json", digest=DIGEST_A),
        dist_event("e4", "push", mediaType=OCI_MANIFEST, digest=DIGEST_A),
        dist_event("e5", "push", mediaType=OCI_INDEX, digest=DIGEST_B, tag="v2.0.0"),
        dist_event("e6", "pull", mediaType=MANIFEST_V2, digest=DIGEST_A, tag="latest"),
        dist_event("e7", "mount", mediaType=LAYER, digest=DIGEST_A, fromRepository="acme/base"),
        dist_event("e8", "delete", digest=DIGEST_A),
        dist_event("e9", "push", mediaType=MANIFEST_V2, digest=DIGEST_A, tag="latest"),
        dist_event("e10", "push", mediaType="application/vnd.docker.distribution.manifest.list.v2+json", tag="multi"),
        dist_event("e11", "push", mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws", tag="old"),
        dist_event("e12", "push", mediaType=OCI_MANIFEST + "; charset=utf-8", digest=DIGEST_A, tag="p"),
    ]
    result = PARSERS["distribution"].parse(registry_headers(EVENTS_V2), body({"events": events}))
    assert result == [
        IgnoredEvent("e1", "push", "acme/widget", "layer blob push (no manifest)"),
        IgnoredEvent("e2", "push", "acme/widget", "layer blob push (no manifest)"),
        IgnoredEvent("e3", "push", "acme/widget", "layer blob push (no manifest)"),
        IgnoredEvent("e4", "push", "acme/widget", "manifest push without a tag"),
        pushed("e5", "v2.0.0", DIGEST_B, OCI_INDEX),
        IgnoredEvent("e6", "pull", "acme/widget", "pull events are not deployed"),
        IgnoredEvent("e7", "mount", "acme/widget", "mount events are not deployed (cross-repository blob mount)"),
        IgnoredEvent("e8", "delete", "acme/widget", "delete events are not deployed"),
        pushed("e9", "latest", DIGEST_A, MANIFEST_V2),
        pushed("e10", "multi", None, "application/vnd.docker.distribution.manifest.list.v2+json"),
        pushed("e11", "old", None, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        pushed("e12", "p", DIGEST_A, OCI_MANIFEST + "; charset=utf-8"),
    ]


def test_envelope_with_malformed_events_ignores_them_and_keeps_the_rest() -> None:
    good = dist_event("ok", "push", mediaType=MANIFEST_V2, digest=DIGEST_A, tag="1.0")
    no_action = dist_event("n1", "push", mediaType=MANIFEST_V2)
    del no_action["action"]
    bad_repo = dist_event("n2", "push", mediaType=MANIFEST_V2, tag="1.0")
    bad_repo["target"]["repository"] = "Acme/../Widget"
    bad_tag = dist_event("n3", "push", mediaType=MANIFEST_V2, tag="feature/x")
    no_repo = dist_event("n4", "push", mediaType=MANIFEST_V2, tag="1.0")
    del no_repo["target"]["repository"]
    events = [None, 7, "push", [good], {}, no_action, bad_repo, bad_tag, no_repo, good,
              {"id": "n5", "action": "sync", "target": {"repository": "acme/widget"}}]
    result = PARSERS["distribution"].parse(registry_headers(), body({"events": events}))
    assert result == [
        IgnoredEvent(None, None, None, "event is not a JSON object"),
        IgnoredEvent(None, None, None, "event is not a JSON object"),
        IgnoredEvent(None, None, None, "event is not a JSON object"),
        IgnoredEvent(None, None, None, "event is not a JSON object"),
        IgnoredEvent(None, None, None, "event without an action"),
        IgnoredEvent("n1", None, "acme/widget", "event without an action"),
        IgnoredEvent("n2", "push", None, "invalid repository name 'Acme/../Widget'"),
        IgnoredEvent("n3", "push", "acme/widget", "invalid tag 'feature/x'"),
        IgnoredEvent("n4", "push", None, "push without a repository"),
        pushed("ok", "1.0", DIGEST_A, MANIFEST_V2),
        IgnoredEvent("n5", "sync", "acme/widget", "'sync' events are not deployed"),
    ]


def test_distribution_registry_falls_back_to_the_target_url_host() -> None:
    event = dist_event(
        "u1", "push", mediaType=MANIFEST_V2, digest=DIGEST_A, tag="1.0",
        url=f"https://user@mirror.example.org:8443/v2/acme/widget/manifests/{DIGEST_A}",
    )
    del event["request"]
    del event["actor"]
    [result] = PARSERS["distribution"].parse(registry_headers(), body({"events": [event]}))
    assert result == pushed("u1", "1.0", DIGEST_A, MANIFEST_V2, registry="mirror.example.org:8443", actor=None)


def test_distribution_event_without_id_gets_a_derived_one() -> None:
    event = dist_event("x", "push", mediaType=MANIFEST_V2, digest=DIGEST_A, tag="1.0")
    del event["id"]
    [first] = PARSERS["distribution"].parse(registry_headers(), body({"events": [event]}))
    [again] = PARSERS["distribution"].parse(registry_headers(), body({"events": [event]}))
    assert isinstance(first, ImagePushed)
    assert first.event_id == again.event_id == derived_id(
        "distribution", "acme/widget", "1.0", DIGEST_A, "2024-05-01T10:00:00.123456789Z"
    )


def test_distribution_manifest_without_media_type_is_read_from_its_url() -> None:
    manifest = dist_event("m", "push", tag="1.0", url=f"https://r.example.com/v2/acme/widget/manifests/{DIGEST_A}")
    blob = dist_event("b", "push", url=f"https://r.example.com/v2/acme/widget/blobs/{DIGEST_A}")
    result = PARSERS["distribution"].parse(registry_headers(), body({"events": [manifest, blob]}))
    assert result == [
        pushed("m", "1.0", None, None),
        IgnoredEvent("b", "push", "acme/widget", "layer blob push (no manifest)"),
    ]


def test_empty_envelope_is_an_empty_list() -> None:
    assert PARSERS["distribution"].parse(registry_headers(), b'{"events": []}') == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": ""},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/xml"},
        {"Content-Type": "application/vnd.docker.distribution.events.v3+json"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ],
    ids=["missing", "empty", "text", "xml", "unknown-version", "form"],
)
def test_distribution_refuses_other_content_types_with_415(headers: dict[str, str]) -> None:
    with pytest.raises(InputError) as caught:
        PARSERS["distribution"].parse(headers, shared("keel_registry_push_manifest_tag.json"))
    assert caught.value.status == 415
    assert "Content-Type" in str(caught.value)


def test_distribution_reads_the_content_type_header_case_insensitively() -> None:
    result = PARSERS["distribution"].parse({"content-type": EVENTS_V1}, shared("keel_registry_push_manifest_tag.json"))
    assert [type(item) for item in result] == [ImagePushed]


def test_distribution_refuses_a_bare_event() -> None:
    bare = json.loads(shared("keel_registry_push_manifest_tag.json"))["events"][0]
    with pytest.raises(InputError, match="envelope.*bare event") as caught:
        PARSERS["distribution"].parse(registry_headers(), body(bare))
    assert caught.value.status == 400


@pytest.mark.parametrize("envelope", [{}, {"events": None}, {"events": {"0": {}}}, {"events": "push"}])
def test_distribution_refuses_a_body_without_an_events_list(envelope: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="envelope") as caught:
        PARSERS["distribution"].parse(registry_headers(), body(envelope))
    assert caught.value.status == 400


# --- Docker Hub ---------------------------------------------------------------------------


def dockerhub_payload(**push_data: Any) -> dict[str, Any]:
    payload = json.loads(data("dockerhub_docs_push.json"))
    payload["push_data"].update(push_data)
    return payload


def test_dockerhub_ids_are_stable_per_push_and_differ_between_pushes() -> None:
    parse = PARSERS["dockerhub"].parse
    [first] = parse(JSON_HEADERS, body(dockerhub_payload()))
    [redelivered] = parse(JSON_HEADERS, body(dockerhub_payload()))
    [float_form] = parse(JSON_HEADERS, body(dockerhub_payload(pushed_at=1.417566161e09)))
    [later] = parse(JSON_HEADERS, body(dockerhub_payload(pushed_at=1417566200)))
    [other_tag] = parse(JSON_HEADERS, body(dockerhub_payload(tag="v1")))
    assert first.event_id == redelivered.event_id == float_form.event_id
    assert float_form.pushed_at == "1417566161"
    assert len({first.event_id, later.event_id, other_tag.event_id}) == 3


def test_dockerhub_push_without_tag_is_ignored() -> None:
    old_automated_build = {
        "callback_url": "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141/",
        "push_data": {"images": ["27d47432a69b"], "pushed_at": 1.417566161e09, "pusher": "trustedbuilder"},
        "repository": {"repo_name": "svendowideit/testhook", "namespace": "svendowideit", "name": "testhook"},
    }
    assert PARSERS["dockerhub"].parse(JSON_HEADERS, body(old_automated_build)) == [
        IgnoredEvent(None, "push", "svendowideit/testhook", "push without a tag")
    ]


def test_dockerhub_repository_from_namespace_and_name() -> None:
    payload = {"push_data": {"tag": "1.2", "pushed_at": 5}, "repository": {"namespace": "acme", "name": "widget"}}
    [result] = PARSERS["dockerhub"].parse(JSON_HEADERS, body(payload))
    assert (result.registry, result.repository, result.tag, result.actor) == ("docker.io", "acme/widget", "1.2", None)


# --- Quay ---------------------------------------------------------------------------------


def test_quay_one_image_per_updated_tag() -> None:
    payload = {
        "repository": "acme/widget",
        "namespace": "acme",
        "name": "widget",
        "docker_url": "quay.example.com:8443/acme/widget",
        "homepage": "https://quay.example.com:8443/repository/acme/widget",
        "updated_tags": ["latest", "v1", "latest", "bad tag", 3],
    }

    def image(tag: str) -> ImagePushed:
        return ImagePushed("quay", derived_id("quay", "acme/widget", tag, None, None), "quay.example.com:8443",
                           "acme/widget", tag, None, None, None, None)

    assert PARSERS["quay"].parse(JSON_HEADERS, body(payload)) == [
        image("latest"),
        image("v1"),
        IgnoredEvent(None, "repo_push", "acme/widget", "invalid tag 'bad tag'"),
        IgnoredEvent(None, "repo_push", "acme/widget", "tag 3 is not a string"),
    ]


def test_quay_legacy_updated_tags_object() -> None:
    """The 2013 quay.io example: updated_tags maps tag -> v1 image id (not a manifest digest)."""
    image_id = "b750fe79269d2ec9a3c593ef05b4332b1d1a02a62b4accb2c21d589ff2f5f2dc"
    payload = {
        "pushed_image_count": 2,
        "name": "ubuntu",
        "repository": "devtable/ubuntu",
        "docker_url": "quay.io/devtable/ubuntu",
        "updated_tags": {"latest": image_id},
        "namespace": "devtable",
        "visibility": "private",
        "homepage": "https://quay.io/repository/devtable/ubuntu",
    }
    assert PARSERS["quay"].parse(JSON_HEADERS, body(payload)) == [
        ImagePushed("quay", derived_id("quay", "devtable/ubuntu", "latest", None, None, image_id), "quay.io",
                    "devtable/ubuntu", "latest", None, None, None, None)
    ]


def test_quay_other_notifications_are_ignored() -> None:
    build_success = {
        "build_id": "296ec063-5f86-4706-a469-f0a400bf9df2",
        "name": "test",
        "repository": "dgangaia/test",
        "namespace": "dgangaia",
        "docker_url": "quay.io/dgangaia/test",
        "docker_tags": ["master", "latest"],
        "image_id": "1245657346",
    }
    no_tags = {"repository": "dgangaia/test", "docker_url": "quay.io/dgangaia/test", "updated_tags": []}
    assert PARSERS["quay"].parse(JSON_HEADERS, body(build_success)) == [
        IgnoredEvent(None, None, "dgangaia/test",
                     "build notifications are not deployed (the push after a build sends repo_push)")
    ]
    assert PARSERS["quay"].parse(JSON_HEADERS, body(no_tags)) == [
        IgnoredEvent(None, "repo_push", "dgangaia/test", "repository push without updated tags")
    ]


# --- Harbor -------------------------------------------------------------------------------


def harbor_payload(event_type: str = "PUSH_ARTIFACT", resources: Any = None) -> dict[str, Any]:
    payload = json.loads(data("harbor_docs_push_artifact.json"))
    payload["type"] = event_type
    if resources is not None:
        payload["event_data"]["resources"] = resources
    return payload


def test_harbor_one_image_per_tagged_resource() -> None:
    resources = [
        {"digest": DIGEST_A, "tag": "v1", "resource_url": "harbor.example.com:8443/test-webhook/debian:v1"},
        {"digest": DIGEST_B, "tag": "", "resource_url": f"harbor.example.com:8443/test-webhook/debian@{DIGEST_B}"},
        "not-an-object",
    ]
    result = PARSERS["harbor"].parse(JSON_HEADERS, body(harbor_payload(resources=resources)))
    assert result == [
        ImagePushed("harbor", derived_id("harbor", "test-webhook/debian", "v1", DIGEST_A, "1586922308"),
                    "harbor.example.com:8443", "test-webhook/debian", "v1", DIGEST_A, None, "1586922308", "admin"),
        IgnoredEvent(None, "PUSH_ARTIFACT", "test-webhook/debian", "artifact push without a tag"),
        IgnoredEvent(None, "PUSH_ARTIFACT", "test-webhook/debian", "resource is not a JSON object"),
    ]


@pytest.mark.parametrize(
    "event_type, reason",
    [
        ("PULL_ARTIFACT", "pull events are not deployed"),
        ("DELETE_ARTIFACT", "delete events are not deployed"),
        ("SCANNING_COMPLETED", "'SCANNING_COMPLETED' events are not deployed"),
        ("QUOTA_EXCEED", "'QUOTA_EXCEED' events are not deployed"),
        ("REPLICATION", "'REPLICATION' events are not deployed"),
        ("UPLOAD_CHART", "'UPLOAD_CHART' events are not deployed"),
    ],
)
def test_harbor_other_types_are_ignored(event_type: str, reason: str) -> None:
    assert PARSERS["harbor"].parse(JSON_HEADERS, body(harbor_payload(event_type))) == [
        IgnoredEvent(None, event_type, "test-webhook/debian", reason)
    ]


def test_harbor_legacy_push_image_type() -> None:
    [result] = PARSERS["harbor"].parse(JSON_HEADERS, body(harbor_payload("pushImage")))
    assert isinstance(result, ImagePushed) and result.tag == "latest"


def test_harbor_cloudevents_format() -> None:
    payload = {
        "specversion": "1.0",
        "id": "66e18103-09c1-41f6-982f-37df223f3eeb",
        "requestid": "51c0b694-0168-4f3c-b0db-282565455d7b",
        "source": "/projects/2/webhook/policies/15",
        "type": "harbor.artifact.pushed",
        "datacontenttype": "application/json",
        "time": "2023-04-03T06:04:46Z",
        "data": {
            "resources": [
                {"digest": DIGEST_A, "tag": "stable", "resource_url": "registry.example.com/team/app:stable"},
                {"digest": DIGEST_A, "tag": "1.4", "resource_url": "registry.example.com/team/app:1.4"},
            ],
            "repository": {"name": "app", "namespace": "team", "repo_full_name": "team/app", "repo_type": "private"},
        },
        "operator": "harbor-jobservice",
    }
    headers = {"Content-Type": "application/cloudevents+json"}
    assert PARSERS["harbor"].parse(headers, body(payload)) == [
        ImagePushed("harbor", "66e18103-09c1-41f6-982f-37df223f3eeb#0", "registry.example.com", "team/app",
                    "stable", DIGEST_A, None, "2023-04-03T06:04:46Z", "harbor-jobservice"),
        ImagePushed("harbor", "66e18103-09c1-41f6-982f-37df223f3eeb#1", "registry.example.com", "team/app",
                    "1.4", DIGEST_A, None, "2023-04-03T06:04:46Z", "harbor-jobservice"),
    ]
    payload["type"] = "harbor.artifact.pulled"
    assert PARSERS["harbor"].parse(headers, body(payload)) == [
        IgnoredEvent("66e18103-09c1-41f6-982f-37df223f3eeb", "harbor.artifact.pulled", "team/app",
                     "pull events are not deployed")
    ]


def test_harbor_repository_falls_back_to_resource_url_then_namespace() -> None:
    payload = harbor_payload(resources=[{"tag": "v1", "resource_url": "https://h.example.com/proj/sub/app:v1"}])
    del payload["event_data"]["repository"]["repo_full_name"]
    [from_url] = PARSERS["harbor"].parse(JSON_HEADERS, body(payload))
    assert (from_url.registry, from_url.repository, from_url.digest) == ("h.example.com", "proj/sub/app", None)
    payload["event_data"]["resources"] = [{"tag": "v1"}]
    [from_names] = PARSERS["harbor"].parse(JSON_HEADERS, body(payload))
    assert (from_names.registry, from_names.repository) == (None, "test-webhook/debian")


def test_harbor_push_without_resources_is_ignored() -> None:
    assert PARSERS["harbor"].parse(JSON_HEADERS, body(harbor_payload(resources=[]))) == [
        IgnoredEvent(None, "PUSH_ARTIFACT", "test-webhook/debian", "artifact push without resources")
    ]


# --- ACR ----------------------------------------------------------------------------------


def acr_payload(**changes: Any) -> dict[str, Any]:
    payload = json.loads(data("acr_docs_push.json"))
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"action": "chart_push", "target": {"mediaType": "application/vnd.acr.helm.chart", "size": 25265,
                                                "digest": DIGEST_A, "repository": "repo", "tag": "wordpress-5.4.0.tgz",
                                                "name": "wordpress", "version": "5.4.0"}},
            IgnoredEvent("cb8c3971-9adc-488b-bdd8-43cbb4974ff5", "chart_push", "repo",
                         "chart_push events are not deployed (Helm chart, not an image)"),
        ),
        (
            {"action": "quarantine"},
            IgnoredEvent("cb8c3971-9adc-488b-bdd8-43cbb4974ff5", "quarantine", "hello-world",
                         "'quarantine' events are not deployed"),
        ),
        (
            {"action": "ping", "target": None},
            IgnoredEvent("cb8c3971-9adc-488b-bdd8-43cbb4974ff5", "ping", None,
                         "ping (a test delivery from the portal)"),
        ),
        (
            {"target": {"mediaType": MANIFEST_V2, "digest": DIGEST_A, "repository": "hello-world"}},
            IgnoredEvent("cb8c3971-9adc-488b-bdd8-43cbb4974ff5", "push", "hello-world", "manifest push without a tag"),
        ),
    ],
    ids=["chart_push", "quarantine", "ping", "untagged"],
)
def test_acr_non_deployable_events(changes: dict[str, Any], expected: IgnoredEvent) -> None:
    assert PARSERS["acr"].parse(JSON_HEADERS, body(acr_payload(**changes))) == [expected]


def test_acr_push_without_id_gets_a_derived_one() -> None:
    payload = acr_payload()
    del payload["id"]
    [result] = PARSERS["acr"].parse(JSON_HEADERS, body(payload))
    assert result.event_id == derived_id(
        "acr", "hello-world", "v1", "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
        "2017-11-17T16:52:01.343145347Z",
    )


# --- errors -------------------------------------------------------------------------------

ALL_PARSERS = sorted(PARSERS)


def test_parsers_dict_is_explicit() -> None:
    assert ALL_PARSERS == ["acr", "distribution", "dockerhub", "harbor", "quay"]
    assert all(callable(module.parse) for module in PARSERS.values())


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe{}", b'{"events": [}', b"[" * 100_000],
                         ids=["empty", "truncated", "text", "bad-utf8", "broken", "deep"])
@pytest.mark.parametrize("parser", ALL_PARSERS)
def test_bad_json_is_a_400(parser: str, raw: bytes) -> None:
    with pytest.raises(InputError, match="JSON") as caught:
        PARSERS[parser].parse(registry_headers(), raw)
    assert caught.value.status == 400


@pytest.mark.parametrize("raw", [b"[]", b"null", b"3", b'"push"', b"[{}]"])
@pytest.mark.parametrize("parser", ALL_PARSERS)
def test_non_object_json_is_a_400(parser: str, raw: bytes) -> None:
    with pytest.raises(InputError, match="JSON object") as caught:
        PARSERS[parser].parse(registry_headers(), raw)
    assert caught.value.status == 400


@pytest.mark.parametrize("parser", ALL_PARSERS)
def test_a_non_bytes_body_is_a_400(parser: str) -> None:
    with pytest.raises(InputError) as caught:
        PARSERS[parser].parse(registry_headers(), None)  # type: ignore[arg-type]
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "parser, payload, message",
    [
        ("dockerhub", {"events": []}, "not a Docker Hub webhook"),
        ("dockerhub", {"push_data": "latest", "repository": "acme/widget"}, "not a Docker Hub webhook"),
        ("quay", {"events": []}, "not a Quay notification"),
        ("quay", {"repository": "acme/widget", "updated_tags": "latest"}, "updated_tags must be a list"),
        ("harbor", {"events": []}, "not a Harbor webhook"),
        ("harbor", {"type": 3, "event_data": {}}, "not a Harbor webhook"),
        ("acr", {"events": []}, "not an Azure Container Registry webhook"),
        ("acr", {"action": ["push"]}, "not an Azure Container Registry webhook"),
    ],
)
def test_another_shape_is_a_400(parser: str, payload: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        PARSERS[parser].parse(JSON_HEADERS, body(payload))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "parser, name",
    [("dockerhub", "quay_docs_repo_push.json"), ("quay", "harbor_docs_push_artifact.json"),
     ("harbor", "acr_docs_push.json"), ("acr", "dockerhub_docs_push.json")],
)
def test_another_registrys_payload_is_a_400(parser: str, name: str) -> None:
    with pytest.raises(InputError):
        PARSERS[parser].parse(JSON_HEADERS, data(name))


# --- fuzz: mutated payloads give a list or InputError, nothing else -----------------------

FUZZ_SEED = 20240501
FUZZ_MUTATIONS = 300
REPLACEMENTS: list[Any] = [
    None, [], {}, 0, -1, 1.5, 1e308, True, "", " ", "x", "push", "latest", "sha256:", "\ud800",
    "a" * 300, [1, "a", None], {"a": 1}, {"events": []}, "http://[::1", "https://h:99999999/v2/x",
]


def fuzz_sources() -> list[Any]:
    sources = [json.loads(shared(name)) for name in sorted(SHARED_EXPECTED)]
    sources += [json.loads(path.read_bytes()) for path in sorted(DATA.glob("*.json"))]
    sources.append(harbor_payload(resources=[{"tag": "v1", "digest": DIGEST_A, "resource_url": "h.io/a/b:v1"}] * 2))
    return sources


def containers(node: Any, found: list[Any]) -> list[Any]:
    """Every dict and list inside ``node`` (including itself)."""
    if isinstance(node, (dict, list)):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            containers(child, found)
    return found


def mutate(payload: Any, rng: random.Random) -> Any:
    payload = copy.deepcopy(payload)
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.03:
            return rng.choice(REPLACEMENTS)
        candidates = [node for node in containers(payload, []) if node]
        if not candidates:
            break
        node = rng.choice(candidates)
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        if rng.random() < 0.3:
            del node[key]
        else:
            node[key] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return payload


def assert_well_formed(result: Any) -> None:
    assert isinstance(result, list)
    for item in result:
        assert isinstance(item, (ImagePushed, IgnoredEvent)), item
        if isinstance(item, ImagePushed):
            assert item.source in PARSERS
            assert isinstance(item.event_id, str) and item.event_id
            assert isinstance(item.repository, str) and item.repository
            assert isinstance(item.tag, str) and item.tag
            for value in (item.registry, item.digest, item.media_type, item.pushed_at, item.actor):
                assert value is None or isinstance(value, str)
        else:
            assert isinstance(item.reason, str) and item.reason
            for value in (item.event_id, item.action, item.repository):
                assert value is None or isinstance(value, str)


def test_fuzzed_payloads_give_a_list_or_input_error() -> None:
    rng = random.Random(FUZZ_SEED)
    sources = fuzz_sources()
    outcomes = {"list": 0, "input_error": 0, "pushed": 0}
    for round_ in range(FUZZ_MUTATIONS):
        mutated = mutate(rng.choice(sources), rng)
        raw = json.dumps(mutated).encode()
        if round_ % 10 == 0:  # byte-level damage now and then
            cut = rng.randrange(len(raw) + 1)
            raw = raw[:cut] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 4))) + raw[cut:]
        for name, module in PARSERS.items():
            try:
                result = module.parse(registry_headers(), raw)
            except InputError as exc:
                assert exc.status in (400, 415), (name, mutated)
                outcomes["input_error"] += 1
            except Exception as exc:  # noqa: BLE001 - the failure this test looks for, shown with its input
                pytest.fail(f"{name}.parse raised {exc!r} for {raw[:300]!r}")
            else:
                assert_well_formed(result)
                outcomes["list"] += 1
                outcomes["pushed"] += sum(isinstance(item, ImagePushed) for item in result)
    # Each body suits one parser of five, so most answers are InputError; enough must
    # still parse (and some still push) for the test to check the readers at all.
    assert outcomes["list"] > FUZZ_MUTATIONS // 2 and outcomes["pushed"] > 50, outcomes
