"""What every session of one router reads: the call, the config, live agent state, time."""

from __future__ import annotations

import datetime as dt
import logging

from vpbx_common.nodeconfig import NodeConfig, Prompt

from .actions import Play, QueueAnnouncement, Sound, SpokenPhrase, StopPlayback
from .agents import AgentSnapshot, Availability
from .context import CallContext
from .trace import Output

logger = logging.getLogger(__name__)


class RouterEnv:
    """Shared by the router and its sessions; ``agents`` is replaced when a fresher
    snapshot arrives, everything else is fixed for the call."""

    def __init__(
        self,
        call: CallContext,
        config: NodeConfig,
        agents: AgentSnapshot,
        epoch_offset: float,
        out: Output,
    ) -> None:
        self.call = call
        self.config = config
        self.agents = agents
        self.epoch_offset = epoch_offset  # now + epoch_offset = Unix time
        self.out = out
        self.playing = False  # something plays to the caller (a prompt, music, ringback)

    def epoch(self, now: float) -> float:
        return now + self.epoch_offset

    def wall(self, now: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.epoch(now), tz=dt.UTC)

    def availability(self, extension: str, now: float, *, handed_out: bool = True) -> Availability:
        if extension == self.call.internal_caller:
            return Availability.CALLER
        if extension.startswith("+"):
            return Availability.FREE  # a number outside: only its carrier knows
        user = self.config.user(extension)
        if user is None:
            return Availability.UNKNOWN
        return self.agents.availability(user, self.epoch(now), handed_out=handed_out)

    def log(self, level: int, message: str, *args: object) -> None:
        logger.log(
            level, "call=%s tenant=%s " + message, self.call.call_id, self.call.tenant, *args
        )

    def play(
        self, sound: Prompt | Sound | QueueAnnouncement | SpokenPhrase, *, loop: bool = False
    ) -> None:
        self.out.act(Play(sound, loop))
        self.playing = True

    def stop_playback(self) -> None:
        if self.playing:
            self.out.act(StopPlayback())
            self.playing = False
