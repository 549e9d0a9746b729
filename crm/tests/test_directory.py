"""/v1/directory/users: the tenant's people as the workspace names them."""

from __future__ import annotations

import pytest
from tests.services.crm import CrmHarness, crm_tenant

from vpbx_control.auth.principal import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_an_agent_sees_colleagues_names_extensions_and_roles_not_emails(
    module_crm: CrmHarness,
) -> None:
    tenant = await crm_tenant(module_crm)
    other = await crm_tenant(module_crm)
    olga = await module_crm.control.add_user(
        tenant, name="Olga", extension="101", role=Role.SUPERVISOR, email="olga@x.example"
    )
    await module_crm.control.add_user(tenant, name="anna", extension=None)
    stranger = await module_crm.control.add_user(other, name="Stranger")
    agent = await module_crm.as_role(tenant, Role.AGENT)
    response = await module_crm.client.get("/v1/directory/users", headers=agent)
    assert response.status_code == 200, response.text
    people = response.json()["items"]
    by_name = {person["name"]: person for person in people}
    assert by_name["Olga"] == {
        "id": str(olga.id),
        "name": "Olga",
        "extension": "101",
        "role": "supervisor",
    }
    assert by_name["anna"]["extension"] is None
    names = [person["name"] for person in people]
    assert names == sorted(names, key=str.casefold)  # by name, whatever the case
    assert "olga@x.example" not in response.text
    assert str(stranger.id) not in response.text
    assert (await module_crm.client.get("/v1/directory/users")).status_code == 401
