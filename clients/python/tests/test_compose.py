"""Static checks of the repo's docker-compose.yml against the gateway's config keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPOSE = REPO_ROOT / "docker-compose.yml"
CONFIG_RS = REPO_ROOT / "src" / "config.rs"
# Read by the config loader itself rather than a Config field.
LOADER_KEYS = frozenset({"TG_CONFIG"})
S3_EMULATORS = ("seaweedfs", "minio", "localstack", "motoserver", "s3mock", "s3rver")
DYNAMODB_EMULATORS = ("dynamodb-local", "localstack", "motoserver")

pytestmark = pytest.mark.skipif(not COMPOSE.is_file(), reason="no docker-compose.yml")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), data
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec or {} for name, spec in compose["services"].items()}


def config_keys() -> set[str]:
    """TG_<FIELD> for every `pub <field>:` in src/config.rs's `pub struct Config` block."""
    text = CONFIG_RS.read_text()
    block = re.search(r"^pub struct Config \{\n(.*?)^\}", text, re.M | re.S)
    assert block, f"no `pub struct Config` block in {CONFIG_RS}"
    fields = re.findall(r"^\s*pub (\w+)\s*:", block.group(1), re.M)
    keys = {f"TG_{field.upper()}" for field in fields}
    assert {"TG_LISTEN", "TG_STORAGE", "TG_CATALOG"} <= keys, keys
    return keys


def environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: v for k, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(spec: dict[str, Any]) -> set[str]:
    deps = spec.get("depends_on") or []
    return set(deps) if isinstance(deps, list) else set(deps.keys())


def runs_gateway(name: str, spec: dict[str, Any]) -> bool:
    """Services built from the repo (the gateway and its one-shot commands) or using its image."""
    return name == "gateway" or "build" in spec or "transcript-gateway" in str(spec.get("image"))


def endpoint_service(env: dict[str, str], key: str, services: dict[str, Any]) -> str:
    assert key in env, f"gateway has no {key}"
    host = urlsplit(env[key]).hostname
    assert host in services, f"{key}={env[key]} does not name a compose service"
    return host


def host_ip(port: Any) -> str | None:
    """The host address a `ports` entry publishes on, or None when it names none."""
    if isinstance(port, dict):
        return port.get("host_ip")
    text = str(port).split("/", 1)[0]
    if text.startswith("["):
        return text[1 : text.index("]")]
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else None


def test_gateway_uses_s3_and_dynamodb_emulators(services: dict[str, dict[str, Any]]) -> None:
    """The gateway runs on S3 + DynamoDB, each pointing at an emulator service of the file."""
    assert "gateway" in services
    env = environment(services["gateway"])
    assert env.get("TG_STORAGE") == "s3"
    assert env.get("TG_CATALOG") == "dynamodb"
    s3 = endpoint_service(env, "TG_S3_ENDPOINT_URL", services)
    dynamodb = endpoint_service(env, "TG_DYNAMODB_ENDPOINT_URL", services)
    assert any(e in str(services[s3].get("image", "")).lower() for e in S3_EMULATORS), services[s3]
    assert any(e in str(services[dynamodb].get("image", "")).lower() for e in DYNAMODB_EMULATORS), (
        services[dynamodb]
    )


def test_gateway_depends_on_the_emulators(services: dict[str, dict[str, Any]]) -> None:
    """The gateway starts after both emulators."""
    env = environment(services["gateway"])
    emulators = {
        endpoint_service(env, "TG_S3_ENDPOINT_URL", services),
        endpoint_service(env, "TG_DYNAMODB_ENDPOINT_URL", services),
    }
    assert emulators <= depends_on(services["gateway"])


def test_every_tg_key_is_a_config_key(services: dict[str, dict[str, Any]]) -> None:
    """No TG_* variable given to a gateway container is a typo or a removed setting."""
    known = config_keys() | LOADER_KEYS
    checked = 0
    for name, spec in services.items():
        if not runs_gateway(name, spec):
            continue
        unknown = sorted(k for k in environment(spec) if k.startswith("TG_") and k not in known)
        assert not unknown, f"service {name} sets unknown config keys {unknown}"
        checked += 1
    assert checked >= 1


def test_published_ports_bind_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """Every published port is on 127.0.0.1, and no service shares the host network."""
    for name, spec in services.items():
        assert spec.get("network_mode") != "host", f"service {name} uses the host network"
        for port in spec.get("ports") or []:
            assert host_ip(port) == "127.0.0.1", (
                f"service {name} publishes {port!r} beyond loopback"
            )


def test_port_parsing() -> None:
    """host_ip reads the short and long `ports` syntaxes."""
    assert host_ip("127.0.0.1:8787:8787") == "127.0.0.1"
    assert host_ip("127.0.0.1:8787:8787/tcp") == "127.0.0.1"
    assert host_ip("8787:8787") is None
    assert host_ip("8787") is None
    assert host_ip(8787) is None
    assert host_ip("[::1]:8787:8787") == "::1"
    assert host_ip({"target": 8787, "published": 8787, "host_ip": "127.0.0.1"}) == "127.0.0.1"
    assert host_ip({"target": 8787, "published": 8787}) is None


def test_gateway_runs_with_a_token_secret(services: dict[str, dict[str, Any]]) -> None:
    """The compose gateway listens beyond loopback inside its container, so it needs a key:
    a secret long enough for the gateway to accept, and no open mode."""
    env = environment(services["gateway"])
    assert len(env.get("TG_AUTH_SECRET", "")) >= 32, "TG_AUTH_SECRET of at least 32 bytes"
    assert env.get("TG_INSECURE_NO_AUTH", "false").lower() != "true"
