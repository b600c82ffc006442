"""Real pull and merge request payloads from tests/fixtures/, rewritten to a test repository and signed.

``request_delivery(host, ...)`` gives the body and headers one host sends for a request whose head
is ``sha`` on branch ``head`` into ``base``; ``before`` is the previous head (an update), ``fork``
makes the head come from another repository.
"""

from __future__ import annotations

import json
from typing import Any

from tests.payloads import fixture, signed_headers

# host -> (provider, the event headers of an opened request, of an update)
HOSTS = {
    "github": ("github", {"X-GitHub-Event": "pull_request"}, {"X-GitHub-Event": "pull_request"}),
    "gitlab": ("gitlab", {"X-Gitlab-Event": "Merge Request Hook"}, {"X-Gitlab-Event": "Merge Request Hook"}),
    "bitbucket-cloud": ("bitbucket", {"X-Event-Key": "pullrequest:created"}, {"X-Event-Key": "pullrequest:updated"}),
    "bitbucket-server": ("bitbucket", {"X-Event-Key": "pr:opened"}, {"X-Event-Key": "pr:from_ref_updated"}),
    "gitea": ("gitea", {"X-Gitea-Event": "pull_request"}, {"X-Gitea-Event": "pull_request"}),
}
# The ref each host's request head is fetched from (Bitbucket Cloud has none: the head branch).
REQUEST_REFS = {
    "github": "refs/pull/{n}/head", "gitea": "refs/pull/{n}/head", "gitlab": "refs/merge-requests/{n}/head",
    "bitbucket-server": "refs/pull-requests/{n}/from", "bitbucket-cloud": "refs/heads/{head}",
}


def request_delivery(host: str, secret: str, *, repository: str, number: int, sha: str, head: str,
                     base: str = "main", before: str | None = None, fork: bool = False,
                     action: str | None = None) -> tuple[bytes, dict[str, str]]:
    provider, opened, updated = HOSTS[host]
    payload = _REWRITE[host](repository=repository, number=number, sha=sha, head=head, base=base, before=before,
                             fork=fork)
    if action is not None:
        _set_action(host, payload, action)
    body = json.dumps(payload).encode()
    return body, signed_headers(provider, updated if before else opened, body, secret)


def _set_action(host: str, payload: dict[str, Any], action: str) -> None:
    if host == "gitlab":
        payload["object_attributes"]["action"] = action
    else:
        payload["action"] = action


def _github(*, repository, number, sha, head, base, before, fork, name="github") -> dict[str, Any]:
    payload = fixture(f"{name}/pull_request_{'synchronize' if before and name == 'github' else 'opened'}.json")
    request = payload["pull_request"]
    payload["number"] = request["number"] = number
    payload["repository"]["full_name"] = repository
    request["head"].update(sha=sha, ref=head)
    request["head"]["repo"]["full_name"] = f"mallory/{repository.split('/')[1]}" if fork else repository
    request["base"]["ref"] = base
    request["base"]["repo"]["full_name"] = repository
    if before:
        payload.update(action="synchronize" if name == "github" else "synchronized", before=before, after=sha)
    return payload


def _gitea(**fields) -> dict[str, Any]:
    return _github(**fields, name="gitea")


def _gitlab(*, repository, number, sha, head, base, before, fork) -> dict[str, Any]:
    payload = fixture("gitlab/merge_request_hook_open.json")
    payload["project"]["path_with_namespace"] = repository
    attributes = payload["object_attributes"]
    attributes.update(iid=number, source_branch=head, target_branch=base,
                      source_project_id=attributes["target_project_id"] + (1 if fork else 0))
    attributes["last_commit"]["id"] = sha
    if before:
        attributes.update(action="update", oldrev=before)
    return payload


def _bitbucket_server(*, repository, number, sha, head, base, before, fork) -> dict[str, Any]:
    payload = fixture(f"bitbucket/server_pr_{'from_ref_updated' if before else 'open'}.json")
    request = payload["pullRequest"]
    key, slug = repository.split("/")
    request["id"] = number
    request["toRef"].update(id=f"refs/heads/{base}", displayId=base)
    request["toRef"]["repository"]["project"]["key"] = key
    request["toRef"]["repository"]["slug"] = slug
    request["fromRef"].update(id=f"refs/heads/{head}", displayId=head, latestCommit=sha)
    request["fromRef"]["repository"]["project"]["key"] = "~MALLORY" if fork else key
    request["fromRef"]["repository"]["slug"] = slug
    if before:
        payload["previousFromHash"] = before
    return payload


def _bitbucket_cloud(*, repository, number, sha, head, base, before, fork) -> dict[str, Any]:
    payload = fixture(f"bitbucket/cloud_pullrequest_{'updated' if before else 'created'}.json")
    request = payload["pullrequest"]
    payload["repository"]["full_name"] = repository
    request["id"] = number
    request["source"]["commit"]["hash"] = sha[:12]  # Cloud sends 12 hex digits
    request["source"]["branch"]["name"] = head
    request["source"]["repository"]["full_name"] = f"mallory/{repository.split('/')[1]}" if fork else repository
    request["destination"]["branch"]["name"] = base
    request["destination"]["repository"]["full_name"] = repository
    return payload


_REWRITE = {"github": _github, "gitea": _gitea, "gitlab": _gitlab, "bitbucket-server": _bitbucket_server,
            "bitbucket-cloud": _bitbucket_cloud}
