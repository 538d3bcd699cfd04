"""Credentials from the environment and config.json; WWW-Authenticate challenges; token requests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from venvstacks.errors import StackError
from venvstacks.oci.auth import (
    Challenge,
    Credentials,
    find_credentials,
    parse_challenges,
    token_from_response,
    token_request,
)


def test_bearer_challenge_with_quoted_commas() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }


def test_basic_challenge() -> None:
    assert parse_challenges('Basic realm="venvstacks-test"') == [
        Challenge("basic", {"realm": "venvstacks-test"})
    ]


def test_token_request_with_password_uses_basic_auth() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})
    ask = token_request(challenge, ["repository:a:pull"], Credentials("u", "p"))
    assert ask.method == "GET"
    assert ask.url == "https://auth.example/token?service=reg&scope=repository%3Aa%3Apull"
    assert ask.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


def test_token_request_with_identity_token_posts_a_refresh_grant() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})
    ask = token_request(challenge, ["repository:a:pull"], Credentials(identity_token="rt"))
    assert ask.method == "POST"
    assert ask.body is not None and b"grant_type=refresh_token" in ask.body
    assert b"refresh_token=rt" in ask.body


def test_token_from_either_field() -> None:
    assert token_from_response(b'{"token": "t1"}') == "t1"
    assert token_from_response(b'{"access_token": "t2"}') == "t2"
    with pytest.raises(StackError, match="without a token"):
        token_from_response(b"{}")


def _config(tmp_path: Path, data: object) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_environment_variables_come_first(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"h:5000": {"auth": base64.b64encode(b"a:b").decode()}}})
    env |= {"VENVSTACKS_REGISTRY_USERNAME": "env", "VENVSTACKS_REGISTRY_PASSWORD": "pw"}
    found = find_credentials("h", 5000, env)
    assert found is not None and (found.username, found.password) == ("env", "pw")


@pytest.mark.parametrize("key", ["h:5000", "https://h:5000", "https://h:5000/v2/"])
def test_config_json_auth_entry(tmp_path: Path, key: str) -> None:
    env = _config(tmp_path, {"auths": {key: {"auth": base64.b64encode(b"a:b:c").decode()}}})
    found = find_credentials("h", 5000, env)
    assert found is not None and (found.username, found.password) == ("a", "b:c")
    assert found.source == str(tmp_path / "config.json")


def test_config_json_identity_token_and_default_port(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"ghcr.io": {"identitytoken": "rt"}}})
    found = find_credentials("ghcr.io", 443, env)
    assert found is not None and found.identity_token == "rt"
    assert find_credentials("ghcr.io", 5000, env) is None


def test_no_config_means_no_credentials(tmp_path: Path) -> None:
    assert find_credentials("h", 5000, {"DOCKER_CONFIG": str(tmp_path)}) is None


def test_broken_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(StackError, match=r"config\.json"):
        find_credentials("h", 5000, {"DOCKER_CONFIG": str(tmp_path)})
