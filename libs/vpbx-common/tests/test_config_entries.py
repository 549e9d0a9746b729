"""Number entries written by the control API, PbxConfig admins, device credentials."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vpbx_common.manifests import (
    ManifestError,
    entry_reference,
    parse_platform_documents,
    validate_platform,
)
from vpbx_common.nodeconfig import NodeConfig


def documents(entry: str, admins: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {
                "displayName": "Acme",
                "sipDomain": "acme.vpbx.local",
                "cities": [{"name": "msk"}],
            },
        },
        {
            "apiVersion": "config.vpbx.io/v1alpha1",
            "kind": "PbxConfig",
            "metadata": {"name": "acme"},
            "spec": {
                "users": [
                    {
                        "extension": "101",
                        "name": "Ivan",
                        "city": "msk",
                        "sipPassword": "secret-101",
                        "email": "ivan@acme.example",
                    }
                ],
                "admins": admins or [],
            },
        },
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Number",
            "metadata": {"name": "acme-main"},
            "spec": {"number": "+74950000001", "tenant": "acme", "city": "msk", "entry": entry},
        },
    ]


GROUP_ID = uuid.uuid4()


@pytest.mark.parametrize(
    "entry",
    [
        "unrouted",
        f"group:{GROUP_ID}",
        f"user:{GROUP_ID}",
        f"ivr:{GROUP_ID}",
        f"route-plan:{GROUP_ID}",
    ],
)
def test_api_written_entries_are_accepted(entry: str) -> None:
    assert validate_platform(parse_platform_documents(documents(entry))) == []


@pytest.mark.parametrize("entry", ["group:not-a-uuid", f"queue:{GROUP_ID}", "support"])
def test_other_entries_must_still_name_a_group(entry: str) -> None:
    problems = validate_platform(parse_platform_documents(documents(entry)))
    assert problems == [f"Number/acme-main: entry '{entry}' is not a group of tenant 'acme'"]


def test_entry_reference_parsing() -> None:
    assert entry_reference(f"route-plan:{GROUP_ID}") == ("route-plan", GROUP_ID)
    assert entry_reference("sales") is None
    assert entry_reference("unrouted") is None
    assert entry_reference(f"Group:{GROUP_ID}") is None


def test_admins_are_read_and_checked() -> None:
    admin = {"email": "admin@acme.vpbx.local", "password": "acme-admin-secret"}
    platform = parse_platform_documents(documents("101", [admin]))
    [config] = platform.configs
    assert [a.email for a in config.spec.admins] == ["admin@acme.vpbx.local"]
    assert "acme-admin-secret" not in repr(config)  # a secret, not a plain string

    twice = parse_platform_documents(
        documents("101", [admin, {**admin, "email": "ADMIN@acme.vpbx.local"}])
    )
    assert validate_platform(twice) == [
        "PbxConfig/acme: admin admin@acme.vpbx.local is listed twice",
        "e-mail admin@acme.vpbx.local belongs to several users or admins",
    ]
    clash = parse_platform_documents(documents("101", [{**admin, "email": "ivan@acme.example"}]))
    assert validate_platform(clash) == [
        "e-mail ivan@acme.example belongs to several users or admins"
    ]

    with pytest.raises(ManifestError, match="a password needs at least 8 characters"):
        parse_platform_documents(documents("101", [{**admin, "password": "short"}]))


def test_device_credentials_ring_their_users_extension() -> None:
    config = NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.vpbx.local",
            "city": "msk",
            "suspended": False,
            "users": [
                {"extension": "101", "name": "Ivan", "city": "msk"},
                {
                    "extension": "102",
                    "name": "Maria",
                    "city": "msk",
                    "ha1_md5": "m",
                    "ha1_sha256": "s",
                },
            ],
            "devices": [
                {"username": "ivan-desk", "extension": "101", "ha1_md5": "a", "ha1_sha256": "b"},
                {"username": "ivan-mobile", "extension": "101", "ha1_md5": "c", "ha1_sha256": "d"},
            ],
            "groups": [],
            "numbers": [],
        }
    )
    assert config.extension_for("ivan-desk") == "101"
    assert config.extension_for("ivan-mobile") == "101"
    assert config.extension_for("101") is None  # Ivan has devices, no old-style password
    old_style = config.credentials("102")  # Maria's entry carries her HA1s itself
    assert old_style is not None
    assert (old_style.extension, old_style.ha1_md5) == ("102", "m")
    assert config.extension_for("nobody") is None
