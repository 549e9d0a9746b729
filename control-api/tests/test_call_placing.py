"""POST /v1/calls (click-to-call) and POST /v1/calls/{id}/transfer, /monitor and
/conference: what the API asks the media nodes over Redis, and how it answers what a
node replied.

A stand-in node subscribes to the tenant's command channel in a real Redis and replies
as the test tells it; the node's own handling is in media-node/tests (in process) and
tests/test_calls_out.py (real peers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis
from tests.services.control_api import ApiHarness

from vpbx_common.agents import AgentStateStore
from vpbx_common.commands import (
    AddParty,
    CommandReply,
    MonitorCall,
    NodeCommand,
    Originate,
    ReplyStatus,
    Transfer,
    TransferStep,
    commands_channel,
    reply,
)
from vpbx_common.events import CallEvent, CallEventPublisher, CallEventType
from vpbx_control.auth.principal import Role


class FakeNode:
    """Answers the tenant's commands with ``answer(command)``; keeps what it heard."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        self.client = client
        self.tenant = tenant
        self.heard: list[NodeCommand] = []
        self.answer: Callable[[NodeCommand], CommandReply | None] = lambda _: CommandReply(
            status=ReplyStatus.ACCEPTED, call_id="call-1"
        )
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 5)

    async def _run(self) -> None:
        pubsub = self.client.pubsub()
        await pubsub.subscribe(commands_channel(self.tenant))
        self.ready.set()
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                command = NodeCommand.model_validate_json(message["data"])
                self.heard.append(command)
                answer = self.answer(command)
                if answer is not None:
                    await reply(self.client, command, answer)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def node(api: ApiHarness, flushed_redis: str) -> AsyncIterator[FakeNode]:
    await api.add_tenant("acme", cities=("msk", "ekb"))
    await api.add_tenant("globex")
    client = redis.Redis.from_url(flushed_redis)
    fake = FakeNode(client, "acme")
    await fake.start()
    yield fake
    await fake.stop()
    await client.aclose()


async def test_click_to_call_asks_the_users_city_node_and_answers_202(
    api: ApiHarness, node: FakeNode
) -> None:
    agent = await api.add_user("acme", extension="101", city="ekb", password="agent-pass-123")
    headers = await api.login(agent.email, "agent-pass-123")

    response = await api.client.post("/v1/calls", json={"to": "8 916 123-45-67"}, headers=headers)

    assert response.status_code == 202, response.text
    assert response.json() == {"call_id": "call-1", "status": "ringing-user"}
    [command] = node.heard
    assert isinstance(command.body, Originate)
    assert (command.body.city, command.body.extension, command.body.to) == (
        "ekb",
        "101",
        "+79161234567",
    )
    assert command.by_user == str(agent.id)


async def test_refusals_and_silence_become_clear_errors(api: ApiHarness, node: FakeNode) -> None:
    agent = await api.add_user("acme", extension="101", password="agent-pass-123")
    headers = await api.login(agent.email, "agent-pass-123")

    node.answer = lambda _: CommandReply(status=ReplyStatus.REFUSED, detail="international")
    refused = await api.client.post("/v1/calls", json={"to": "+493012345678"}, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error_id"] == "outbound-refused"
    assert "international" in refused.json()["message"]

    node.answer = lambda _: CommandReply(
        status=ReplyStatus.REFUSED, detail="the user has no registered phone"
    )
    unreachable = await api.client.post("/v1/calls", json={"to": "+79161234567"}, headers=headers)
    assert (unreachable.status_code, unreachable.json()["error_id"]) == (409, "user-unreachable")


async def test_bad_input_is_a_422_naming_the_field_and_nothing_is_asked(
    api: ApiHarness, node: FakeNode
) -> None:
    agent = await api.add_user("acme", extension="101", password="agent-pass-123")
    headers = await api.login(agent.email, "agent-pass-123")

    not_a_number = await api.client.post("/v1/calls", json={"to": "call me"}, headers=headers)
    foreign_id = await api.client.post(
        "/v1/calls", json={"to": "+79161234567", "caller_id": "+74959999999"}, headers=headers
    )

    assert not_a_number.status_code == 422
    assert not_a_number.json()["details"][0]["field"] == "body.to"
    assert foreign_id.status_code == 422
    assert foreign_id.json()["details"][0]["field"] == "body.caller_id"
    assert node.heard == []


async def test_agents_call_as_themselves_and_other_tenants_users_do_not_exist(
    api: ApiHarness, node: FakeNode
) -> None:
    agent = await api.add_user("acme", extension="101", password="agent-pass-123")
    colleague = await api.add_user("acme", extension="102")
    stranger = await api.add_user("globex", extension="101")
    headers = await api.login(agent.email, "agent-pass-123")
    admin = await api.as_role("acme", Role.TENANT_ADMIN)

    as_colleague = await api.client.post(
        "/v1/calls", json={"to": "+79161234567", "from_user": str(colleague.id)}, headers=headers
    )
    for_colleague = await api.client.post(
        "/v1/calls", json={"to": "+79161234567", "from_user": str(colleague.id)}, headers=admin
    )
    for_stranger = await api.client.post(
        "/v1/calls", json={"to": "+79161234567", "from_user": str(stranger.id)}, headers=admin
    )

    assert as_colleague.status_code == 403
    assert for_colleague.status_code == 202
    assert for_stranger.status_code == 404
    assert [c.body.extension for c in node.heard if isinstance(c.body, Originate)] == ["102"]


# A node that hears the command and never answers: the API gives up after
# VPBX_COMMAND_TIMEOUT_S (5 s by default).
@pytest.mark.control_settings(command_timeout_s=0.3)
async def test_no_node_answering_is_503(api: ApiHarness, node: FakeNode) -> None:
    agent = await api.add_user("acme", extension="101", password="agent-pass-123")
    headers = await api.login(agent.email, "agent-pass-123")
    node.answer = lambda _: None

    response = await api.client.post("/v1/calls", json={"to": "+79161234567"}, headers=headers)

    assert response.status_code == 503


async def test_transfers_go_to_the_node_with_the_call(
    api: ApiHarness, node: FakeNode, flushed_redis: str
) -> None:
    supervisor = await api.as_role("acme", Role.SUPERVISOR)

    def answer(command: NodeCommand) -> CommandReply:
        assert isinstance(command.body, Transfer)
        if command.body.call_id == "live@node":
            return CommandReply(status=ReplyStatus.ACCEPTED, call_id="live@node")
        return CommandReply(status=ReplyStatus.NOT_FOUND)

    node.answer = answer
    started = await api.client.post(
        "/v1/calls/live@node/transfer", json={"target": "102"}, headers=supervisor
    )
    missing = await api.client.post(
        "/v1/calls/gone@node/transfer", json={"target": "102"}, headers=supervisor
    )

    assert started.status_code == 202, started.text
    assert started.json() == {"call_id": "live@node", "status": "transferring"}
    assert missing.status_code == 404
    assert missing.json()["error_id"] == "call-not-live"


async def test_an_attended_transfer_consults_then_completes_or_cancels(
    api: ApiHarness, node: FakeNode
) -> None:
    supervisor = await api.as_role("acme", Role.SUPERVISOR)
    steps: list[str] = []

    def answer(command: NodeCommand) -> CommandReply:
        body = command.body
        if body.call_id != "live@node":  # type: ignore[union-attr]
            return CommandReply(status=ReplyStatus.NOT_FOUND)
        if isinstance(body, TransferStep):
            steps.append(body.action)
            if body.action == "complete" and len(steps) == 1:
                return CommandReply(
                    status=ReplyStatus.REFUSED, detail="Consulted Party Not Answered Yet"
                )
        return CommandReply(status=ReplyStatus.ACCEPTED, call_id="live@node")

    node.answer = answer
    consulting = await api.client.post(
        "/v1/calls/live@node/transfer", json={"target": "102", "attended": True}, headers=supervisor
    )
    too_early = await api.client.post("/v1/calls/live@node/transfer/complete", headers=supervisor)
    completed = await api.client.post("/v1/calls/live@node/transfer/complete", headers=supervisor)
    cancelled = await api.client.post("/v1/calls/live@node/transfer/cancel", headers=supervisor)
    unknown = await api.client.post("/v1/calls/live@node/transfer/undo", headers=supervisor)
    gone = await api.client.post("/v1/calls/gone@node/transfer/cancel", headers=supervisor)
    foreign_number = await api.client.post(
        "/v1/calls/live@node/transfer",
        json={"target": "+79161234567", "attended": True, "caller_id": "+74959999999"},
        headers=supervisor,
    )

    assert consulting.status_code == 202, consulting.text
    assert consulting.json() == {"call_id": "live@node", "status": "consulting"}
    [first, *_] = [c.body for c in node.heard if isinstance(c.body, Transfer)]
    assert (first.target, first.attended) == ("102", True)
    assert (too_early.status_code, too_early.json()["error_id"]) == (409, "transfer-refused")
    assert "not answered yet" in too_early.json()["message"].lower()
    assert completed.json() == {"call_id": "live@node", "status": "transferring"}
    assert cancelled.json() == {"call_id": "live@node", "status": "back-with-caller"}
    assert steps == ["complete", "complete", "cancel"]
    assert unknown.status_code == 422
    assert unknown.json()["details"][0]["field"] == "path.action"
    assert (gone.status_code, gone.json()["error_id"]) == (404, "call-not-live")
    assert foreign_number.status_code == 422
    assert foreign_number.json()["details"][0]["field"] == "body.caller_id"


async def test_an_agent_transfers_only_the_call_they_talk_on(
    api: ApiHarness, node: FakeNode, flushed_redis: str
) -> None:
    agent = await api.add_user("acme", extension="101", password="agent-pass-123")
    headers = await api.login(agent.email, "agent-pass-123")
    client = redis.Redis.from_url(flushed_redis)
    try:
        await AgentStateStore(client).call_answered("acme", "101", "mine@node")
    finally:
        await client.aclose()

    mine = await api.client.post(
        "/v1/calls/mine@node/transfer", json={"target": "102"}, headers=headers
    )
    theirs = await api.client.post(
        "/v1/calls/theirs@node/transfer", json={"target": "102"}, headers=headers
    )

    assert mine.status_code == 202, mine.text
    assert theirs.status_code == 404
    assert [c.body.call_id for c in node.heard if isinstance(c.body, Transfer)] == ["mine@node"]


async def test_refused_calls_out_are_counted_for_the_operators_alerts(
    api: ApiHarness, node: FakeNode
) -> None:
    refused = CallEvent(
        type=CallEventType.REFUSED,
        call_id="out-1@node",
        tenant="acme",
        city="msk",
        node="vpbx-node-acme-msk",
        number="+493012345678",
        caller="101",
        callee="",
        at_ms=1_800_000_000_000,
        end_reason="international",
    )
    await CallEventPublisher(api.context.redis).publish(refused)
    line = 'vpbx_outbound_refused_total{reason="international",tenant="acme"} 1.0'
    for _ in range(100):
        metrics = (await api.client.get("/metrics")).text
        if line in metrics:
            break
        await asyncio.sleep(0.1)
    assert line in metrics


def live_only(command: NodeCommand) -> CommandReply:
    """A node that has the call ``live@node`` (and no other) and takes every request."""
    body = command.body
    assert isinstance(body, MonitorCall | AddParty)
    if body.call_id != "live@node":
        return CommandReply(status=ReplyStatus.NOT_FOUND)
    return CommandReply(status=ReplyStatus.ACCEPTED, call_id="live@node")


async def test_a_supervisor_asks_the_node_with_the_call_to_ring_their_phones(
    api: ApiHarness, node: FakeNode
) -> None:
    boss = await api.add_user(
        "acme", extension="103", role=Role.SUPERVISOR, password="boss-pass-123"
    )
    headers = await api.login(boss.email, "boss-pass-123")
    node.answer = live_only

    started = await api.client.post(
        "/v1/calls/live@node/monitor", json={"mode": "whisper"}, headers=headers
    )
    missing = await api.client.post(
        "/v1/calls/gone@node/monitor", json={"mode": "whisper"}, headers=headers
    )

    assert started.status_code == 202, started.text
    assert started.json() == {"call_id": "live@node", "status": "ringing-user"}
    assert (missing.status_code, missing.json()["error_id"]) == (404, "call-not-live")
    command = node.heard[0]
    assert command.body == MonitorCall(call_id="live@node", mode="whisper", extension="103")
    assert command.by_user == str(boss.id)


async def test_monitoring_is_for_supervisors_and_admins_only(
    api: ApiHarness, node: FakeNode
) -> None:
    agent = await api.add_user("acme", extension="101", password="agent-pass-123")
    colleague = await api.add_user("acme", extension="102")
    headers = await api.login(agent.email, "agent-pass-123")
    admin = await api.as_role("acme", Role.TENANT_ADMIN)
    node.answer = live_only

    by_agent = await api.client.post(
        "/v1/calls/live@node/monitor", json={"mode": "listen"}, headers=headers
    )
    for_agent = await api.client.post(
        "/v1/calls/live@node/monitor",
        json={"mode": "listen", "from_user": str(colleague.id)},
        headers=admin,
    )

    assert (by_agent.status_code, by_agent.json()["error_id"]) == (403, "forbidden")
    assert for_agent.status_code == 422
    assert for_agent.json()["details"][0]["field"] == "body.from_user"
    assert not any(c.body.extension for c in node.heard if isinstance(c.body, MonitorCall))


async def test_monitoring_refusals_are_409s_and_bad_input_a_422_naming_the_field(
    api: ApiHarness, node: FakeNode
) -> None:
    await api.add_user("acme", extension="103", role=Role.SUPERVISOR)
    supervisor = await api.as_role("acme", Role.SUPERVISOR)
    boss = await api.add_user("acme", extension="104", role=Role.SUPERVISOR)

    bad_mode = await api.client.post(
        "/v1/calls/live@node/monitor", json={"mode": "spy"}, headers=supervisor
    )
    assert bad_mode.status_code == 422
    assert bad_mode.json()["details"][0]["field"] == "body.mode"
    assert node.heard == []

    node.answer = lambda _: CommandReply(
        status=ReplyStatus.REFUSED, detail="the user has no registered phone"
    )
    no_phone = await api.client.post(
        "/v1/calls/live@node/monitor",
        json={"mode": "listen", "from_user": str(boss.id)},
        headers=supervisor,
    )
    node.answer = lambda _: CommandReply(
        status=ReplyStatus.REFUSED, detail="the call is not connected"
    )
    not_connected = await api.client.post(
        "/v1/calls/live@node/monitor",
        json={"mode": "listen", "from_user": str(boss.id)},
        headers=supervisor,
    )

    assert (no_phone.status_code, no_phone.json()["error_id"]) == (409, "user-unreachable")
    assert (not_connected.status_code, not_connected.json()["error_id"]) == (
        409,
        "monitor-refused",
    )
    assert "not connected" in not_connected.json()["message"]


async def test_another_tenants_call_cannot_be_monitored_or_joined(
    api: ApiHarness, node: FakeNode
) -> None:
    # globex has no node listening: none of its nodes has acme's live call.
    stranger = await api.add_user(
        "globex", extension="103", role=Role.SUPERVISOR, password="globex-pass-1"
    )
    headers = await api.login(stranger.email, "globex-pass-1")

    monitor = await api.client.post(
        "/v1/calls/live@node/monitor", json={"mode": "barge"}, headers=headers
    )
    conference = await api.client.post(
        "/v1/calls/live@node/conference", json={"to": "102"}, headers=headers
    )

    assert (monitor.status_code, monitor.json()["error_id"]) == (404, "call-not-live")
    assert (conference.status_code, conference.json()["error_id"]) == (404, "call-not-live")
    assert node.heard == []


async def test_a_party_of_the_call_adds_a_third_person(
    api: ApiHarness, node: FakeNode, flushed_redis: str
) -> None:
    agent = await api.add_user("acme", extension="101", password="agent-pass-123")
    headers = await api.login(agent.email, "agent-pass-123")
    client = redis.Redis.from_url(flushed_redis)
    try:
        await AgentStateStore(client).call_answered("acme", "101", "live@node")
    finally:
        await client.aclose()
    node.answer = live_only

    mine = await api.client.post(
        "/v1/calls/live@node/conference", json={"to": " 102 "}, headers=headers
    )
    theirs = await api.client.post(
        "/v1/calls/other@node/conference", json={"to": "102"}, headers=headers
    )

    assert mine.status_code == 202, mine.text
    assert mine.json() == {"call_id": "live@node", "status": "ringing-target"}
    assert (theirs.status_code, theirs.json()["error_id"]) == (404, "call-not-live")
    [command] = node.heard
    assert command.body == AddParty(call_id="live@node", target="102")
    assert command.by_user == str(agent.id)


async def test_conference_refusals_are_409s_and_bad_input_a_422_naming_the_field(
    api: ApiHarness, node: FakeNode
) -> None:
    supervisor = await api.as_role("acme", Role.SUPERVISOR)

    empty = await api.client.post(
        "/v1/calls/live@node/conference", json={"to": ""}, headers=supervisor
    )
    foreign_id = await api.client.post(
        "/v1/calls/live@node/conference",
        json={"to": "+79161234567", "caller_id": "+74959999999"},
        headers=supervisor,
    )
    assert (empty.status_code, empty.json()["details"][0]["field"]) == (422, "body.to")
    assert (foreign_id.status_code, foreign_id.json()["details"][0]["field"]) == (
        422,
        "body.caller_id",
    )
    assert node.heard == []

    node.answer = lambda _: CommandReply(
        status=ReplyStatus.REFUSED, detail="International Calls Not Allowed"
    )
    abroad = await api.client.post(
        "/v1/calls/live@node/conference", json={"to": "+442079460000"}, headers=supervisor
    )
    assert (abroad.status_code, abroad.json()["error_id"]) == (409, "conference-refused")
    assert "International" in abroad.json()["message"]
