"""Multi-platform images on the real engine and registry: a rule's platforms give one OCI image index.

Builds run in this process (``pipeline.run_build``), as the worker's task runs them. The arm64
busybox is Debian's (tests/foreign_busybox.py); an arm64 ``RUN`` step runs under qemu through
binfmt_misc, and the pushed image runs with ``docker run --platform linux/arm64``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid

import pytest

from builder.builds.run import pipeline
from builder.errors import InputError
from builder.triggers.rules import RuleSpec
from tests.build_engines import step_output
from tests.builder.builds.run.test_build_limits import queued_build, run, stored
from tests.foreign_busybox import arm64_busybox  # noqa: F401 - a fixture

BOTH = ["linux/amd64", "linux/arm64"]
INDEX = "application/vnd.oci.image.index.v1+json"

EMULATED = """FROM scratch
ARG TARGETARCH
COPY busybox-${TARGETARCH} /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "echo step-arch=$(/bin/busybox uname -m) %s && /bin/busybox uname -m > /arch"]
CMD ["/bin/busybox", "cat", "/arch"]
"""

CROSS = """FROM --platform=$BUILDPLATFORM scratch AS tools
COPY busybox-amd64 /bin/busybox
ARG TARGETARCH
RUN ["/bin/busybox", "sh", "-c", "echo cross-built for $TARGETARCH on $(/bin/busybox uname -m) %s > /made"]
FROM scratch
ARG TARGETARCH
COPY busybox-${TARGETARCH} /bin/busybox
COPY --from=tools /made /made
CMD ["/bin/busybox", "cat", "/made"]
"""


@pytest.fixture
def platform_repo(make_repo, arm64_busybox, tmp_path):  # noqa: F811
    def make(dockerfile: str):
        repo = make_repo(dockerfile % uuid.uuid4().hex, name=f"repo-{uuid.uuid4().hex[:6]}")
        shutil.copy("/bin/busybox", repo.path / "busybox-amd64")
        shutil.copy(arm64_busybox, repo.path / "busybox-arm64")
        return repo, repo.commit({}, "both busyboxes")
    return make


def queued(app, client, repo, sha: str, rule: dict) -> int:
    suffix = uuid.uuid4().hex[:8]
    created = client.post("/api/triggers", json={
        "provider": "github", "repository": f"acme/platforms-{suffix}", "clone_url": repo.url,
        "secret": "platforms-webhook-secret", "image": f"acme/platforms-{suffix}", "rules": [rule]})
    assert created.status_code == 201, created.json
    assert created.json["rules"][0]["platforms"] == rule["platforms"]
    return queued_build(app, created.json["id"], sha)


def built(app, client, settings, repo, sha: str, platforms: list[str], **rule) -> tuple[dict, list[str]]:
    build_id = queued(app, client, repo, sha, {"source": "branch", "platforms": platforms, **rule})
    outcome, _states, _took = run(app, settings.with_(build_engine="buildkit"), build_id)
    lines = stored(app, build_id)[1]
    assert outcome is pipeline.Outcome.SUCCEEDED, "\n".join(lines[-25:])
    return client.get(f"/api/builds/{build_id}").json, lines


def index_of(registry, image: str, tag: str) -> dict:
    request = urllib.request.Request(f"http://{registry.host}/v2/{image}/manifests/{tag}", headers={"Accept": INDEX})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"] == INDEX
        return {"digest": answer.headers["Docker-Content-Digest"], **json.load(answer)}


def docker_run(reference: str, platform: str) -> str:
    # The engine keeps one image per image@digest (the test gate's pull left the engine's own platform's):
    # each platform's pull needs it gone.
    subprocess.run(["/usr/bin/docker", "image", "rm", reference], capture_output=True, timeout=60)
    ran = subprocess.run(["/usr/bin/docker", "run", "--rm", "--network", "none", "--platform", platform, reference],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.strip()


def test_a_rule_with_two_platforms_pushes_one_index_whose_arm64_image_ran_its_step_under_emulation(
        app, client, settings, registry, platform_repo):
    repo, sha = platform_repo(EMULATED)

    build, lines = built(app, client, settings, repo, sha, BOTH,
                         test={"command": ["/bin/busybox", "sh", "-c", "echo tested on $(cat /arch)"]})

    output = step_output(lines)
    assert any(line.startswith("step-arch=x86_64") for line in output), "the amd64 step ran natively"
    assert any(line.startswith("step-arch=aarch64") for line in output), "the arm64 step ran under qemu"
    assert build["platforms"] == BOTH
    index = index_of(registry, build["image"].split("/", 1)[1], "main")
    assert index["mediaType"] == INDEX and index["digest"] == build["digest"]
    assert [(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]] == [
        ("linux", "amd64"), ("linux", "arm64")]
    assert docker_run(build["pull"], "linux/arm64") == "aarch64"
    assert docker_run(build["pull"], "linux/amd64") == "x86_64"
    assert "test: tested on x86_64" in lines, "the test ran in the index's image for the engine's platform"
    assert lines.index("test: tested on x86_64") < next(i for i, line in enumerate(lines) if line.startswith("Tagged"))
    page = client.get(f"/builds/{build['id']}").text
    assert "<code>linux/amd64</code>, <code>linux/arm64</code>" in page


def test_a_cross_build_from_the_build_platform_runs_its_steps_natively(app, client, settings, registry,
                                                                        platform_repo, docker_client):
    repo, sha = platform_repo(CROSS)
    images_before = {image["Id"] for image in docker_client.api.images(all=True)}

    build, lines = built(app, client, settings, repo, sha, ["linux/arm64"])

    left = {image["Id"] for image in docker_client.api.images(all=True)} - images_before
    assert left == set(), "the per-platform image, pushed by digest, is not kept on the engine"
    made = docker_run(build["pull"], "linux/arm64")
    assert made.startswith("cross-built for arm64 on x86_64"), made  # the RUN step ran on the host's platform
    index = index_of(registry, build["image"].split("/", 1)[1], "main")
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64"]


def test_the_classic_engine_refuses_a_rule_with_platforms_saying_why(app, client, settings, platform_repo):
    repo, sha = platform_repo(EMULATED)
    build_id = queued(app, client, repo, sha, {"source": "branch", "platforms": BOTH})

    outcome, _states, _took = run(app, settings.with_(build_engine="classic"), build_id)

    build, _lines = stored(app, build_id)
    assert outcome is pipeline.Outcome.FAILED
    assert build.error.startswith("a rule with platforms needs BUILDHOOK_BUILD_ENGINE=buildkit")


@pytest.mark.parametrize("given, words", [
    ("linux/amd64", "must be a list"),
    (["linux"], "not os/arch[/variant]"),
    (["Linux/AMD64"], "not os/arch[/variant]"),
    (["linux/arm/v7/x"], "not os/arch[/variant]"),
    (["linux/amd64", "linux/amd64"], "twice"),
])
def test_bad_platforms_are_refused_saying_why(client, given, words):
    with pytest.raises(InputError, match=words.replace("[", r"\[")):
        RuleSpec.from_json({"source": "branch", "platforms": given})
    name = f"acme/bad-platforms-{uuid.uuid4().hex[:6]}"
    refused = client.post("/api/triggers", json={"provider": "github", "repository": name, "secret": "s",
                                                 "clone_url": f"https://github.com/{name}.git", "image": name,
                                                 "rules": [{"source": "branch", "platforms": given}]})
    assert refused.status_code == 400 and words in refused.json["error"], refused.json


def test_platforms_of_a_rule_given_with_rule_or_on_the_form_are_stored(app, client, service_env):
    from tests.buildhook.test_cli_triggers_timeout import add
    from tests.webhooks.test_api_triggers import body, browser_with_csrf

    added = add(service_env, "--rule", json.dumps({"source": "branch", "platforms": ["linux/arm/v7"]}), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["rules"][0]["platforms"] == ["linux/arm/v7"]
    refused = add(service_env, "--rule", json.dumps({"source": "branch", "platforms": ["arm64"]}))
    assert refused.returncode != 0 and "not os/arch[/variant]" in refused.stderr

    browser, csrf = browser_with_csrf(app)
    form = {key: value for key, value in body().items() if key != "secret"}
    rules = json.dumps([{"source": "branch", "platforms": BOTH}])
    created = browser.post("/triggers", data={**form, "secret": "s", "rules": rules, "csrf_token": csrf})
    assert created.status_code == 303, created.text  # post/redirect/get
    trigger = next(t for t in client.get("/api/triggers").json["triggers"] if t["repository"] == form["repository"])
    assert trigger["rules"][0]["platforms"] == BOTH
