"""The OpenAPI documents the agent workspace's typed API client is generated from.

Built from the services' app factories (nothing is started or connected), written as
``crm.json`` and ``control.json`` in the same form every time, so the committed copies in
crm/web/openapi/ change exactly when an API the workspace uses does.
``crm/web/scripts/openapi.py`` runs this and then openapi-typescript; ``make test`` checks
the committed files are what they give.

The CRM's document is whole. Of the control API's, the workspace keeps the paths it calls
(``CONTROL_PATHS``: login, recordings, voice messages, click-to-call, its own user, the
reports) and the schemas they use: a change elsewhere in the control API (trunks, IVR...)
changes nothing here. A page that needs another control API path adds its prefix and regenerates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vpbx_control.app import create_app as create_control_app
from vpbx_control.settings import ControlSettings

from ..app import create_app as create_crm_app
from ..settings import CrmSettings

# Prefixes of the control API paths the workspace calls.
CONTROL_PATHS = (
    "/v1/auth/",
    "/v1/users/me",
    "/v1/users/{user_id}/presence",
    "/v1/calls",
    "/v1/voicemails",
    "/v1/reports/",
)
_SCHEMA_REF = "#/components/schemas/"


def _refs(node: Any) -> Iterator[str]:
    """The schema names ``node`` refers to (``$ref``), anywhere inside it."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            yield ref.removeprefix(_SCHEMA_REF)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def subset(document: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """``document`` with only the paths starting with one of ``prefixes`` and the schemas
    they reach (transitively); everything else as it was."""
    paths = {path: item for path, item in document["paths"].items() if path.startswith(prefixes)}
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    wanted: set[str] = set()
    pending = list(_refs(paths))
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(_refs(schemas[name]))
    components = dict(document.get("components", {}))
    components["schemas"] = {name: schemas[name] for name in schemas if name in wanted}
    return {**document, "paths": paths, "components": components}


def documents() -> dict[str, dict[str, Any]]:
    """Service name -> its OpenAPI document, as the workspace sees it."""
    # Fixed settings, not the environment's: the documents do not depend on the machine.
    crm = create_crm_app(CrmSettings(mode="local"), migrate=False)
    control = create_control_app(ControlSettings(mode="local"), migrate=False)
    return {"crm": crm.openapi(), "control": subset(control.openapi(), CONTROL_PATHS)}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in documents().items():
        path = out_dir / f"{name}.json"
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written
