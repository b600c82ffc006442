"""Untrusted input stays data: paths cannot escape the checkout, payloads cannot choose what is cloned."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from builder.builds.image.context import context_archive
from builder.builds.run.clone import clone_commit
from builder.errors import PermanentError
from builder.builds.image.classic import BuildSpec, build_image
from tests.conftest import git
from tests.payloads import github_headers, github_push


class NoEngine:
    """Stands in for the Docker client where the path checks must refuse before any engine call."""

    def __getattr__(self, name):
        raise AssertionError(f"the engine was called ({name}) for a path that escapes the checkout")


@pytest.mark.parametrize("dockerfile, context, message", [
    ("../Dockerfile", ".", "outside the repository"),
    ("/etc/passwd", ".", "outside the repository"),
    ("Dockerfile", "..", "outside the repository"),
    ("link-out/Dockerfile", ".", "outside the repository"),
    ("Dockerfile.link", ".", "outside the repository"),
    ("Dockerfile", "ctx-link", "outside the repository"),
])
def test_a_dockerfile_or_context_that_escapes_the_checkout_is_refused(tmp_path, dockerfile, context, message):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "Dockerfile").write_text("FROM scratch\n")
    os.symlink(outside, checkout / "link-out")
    os.symlink(outside / "Dockerfile", checkout / "Dockerfile.link")
    os.symlink(outside, checkout / "ctx-link")
    spec = BuildSpec(checkout=checkout, dockerfile=dockerfile, context=context, repository="127.0.0.1:1/a/b",
                     tags=("x",), labels={})
    with pytest.raises(PermanentError, match=message):
        build_image(NoEngine(), spec, lambda _line: None)  # type: ignore[arg-type]


def checkout_with_dockerignore(tmp_path, make_repo, target: str, files: dict | None = None):
    """A real clone of a commit whose ``.dockerignore`` is a symlink to ``target``."""
    repo = make_repo(files=files)
    os.symlink(target, repo.path / ".dockerignore")
    git(repo.path, "add", ".dockerignore")
    git(repo.path, "commit", "-q", "-m", "a .dockerignore symlink")
    sha = git(repo.path, "rev-parse", "HEAD")
    return clone_commit(repo.url, sha, "refs/heads/main", tmp_path / "work" / "src", lambda _line: None)


def test_a_dockerignore_symlink_to_a_host_file_fails_the_build_before_anything_reads_it(tmp_path, make_repo):
    checkout = checkout_with_dockerignore(tmp_path, make_repo, "/etc/hostname")
    assert (checkout / ".dockerignore").is_symlink()  # git checked the symlink out as a symlink
    spec = BuildSpec(checkout=checkout, dockerfile="Dockerfile", context=".", repository="127.0.0.1:1/a/b",
                     tags=("x",), labels={})
    with pytest.raises(PermanentError) as raised:
        build_image(NoEngine(), spec, lambda _line: None)  # type: ignore[arg-type]
    assert str(raised.value) == ".dockerignore path '.dockerignore' leads outside the repository"


def test_a_dockerignore_symlink_inside_the_repository_is_followed(tmp_path, make_repo):
    checkout = checkout_with_dockerignore(tmp_path, make_repo, "rules/ignore",
                                          files={"rules/ignore": "*.bin\n", "big.bin": "x" * 1000})
    with context_archive(checkout, "Dockerfile", 0, tmp_path / "scratch", checkout) as (archive, _name, _size):
        import tarfile

        names = tarfile.open(fileobj=archive).getnames()
    assert "Dockerfile" in names and "big.bin" not in names


def test_the_clone_url_comes_from_the_trigger_never_from_the_payload(app, client):
    name = f"acme/untrusted-{uuid.uuid4().hex[:6]}"
    trigger = client.post("/api/triggers", json={"provider": "github", "repository": name,
                                                 "clone_url": "file:///srv/git/the-real-one.git", "secret": "s",
                                                 "image": name}).json
    payload = github_push("push_branch", repository=name, ref="refs/heads/main", sha="a" * 40,
                          clone_url="https://attacker.example.com/evil.git")
    payload["repository"]["ssh_url"] = "git@attacker.example.com:evil.git"
    payload["head_commit"]["message"] = "$(touch /tmp/buildhook-pwned) `id` ; rm -rf /"
    body = json.dumps(payload).encode()
    response = client.post("/hooks/github", data=body, headers=github_headers(body, "s"))
    [build_id] = response.json["builds"]
    build = client.get(f"/api/builds/{build_id}").json
    assert build["commit_message"] == "$(touch /tmp/buildhook-pwned) `id` ; rm -rf /"
    from builder.db.models import Build

    with app.extensions["buildhook"].sessions() as session:
        assert session.get(Build, build_id).clone_url == trigger["clone_url"]
    assert not os.path.exists("/tmp/buildhook-pwned")


def test_subscriptions_cannot_point_at_buildhook_itself(client, settings):
    response = client.post("/api/subscriptions", json={"url": f"{settings.public_url}/api/triggers",
                                                       "events": ["build.failed"]})
    assert response.status_code == 400
