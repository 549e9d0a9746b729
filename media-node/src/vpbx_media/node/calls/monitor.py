"""A supervisor on a live call: listen, whisper (heard by the agent only) or barge in.

The call's two legs stop being bridged directly and meet in a conference mixer
(media/mixer.py) with the supervisor, whose phone gets media of its own from a
second relay. Listening: nobody hears the supervisor; whispering: only the agent
does; barging: everybody. When the supervisor hangs up the mixer goes and the two
legs are bridged directly again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...media.g711 import Codec
from ...media.mixer import Conference, Party
from ...media.scheduler import PacedScheduler
from ...rtp.relay import Leg, MediaRelay
from ..legs.sip import SipUacLeg


class MonitorMode(enum.StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


@dataclass(slots=True)
class Monitor:
    """The mixer of a monitored call and the supervisor's side of it."""

    mode: MonitorMode
    supervisor: SipUacLeg  # the supervisor's dialog (their phone called in)
    relay: MediaRelay  # the supervisor's media
    conference: Conference
    parties: tuple[Party, Party, Party]  # caller, answerer, supervisor

    @classmethod
    def start(
        cls,
        mode: MonitorMode,
        call_relay: MediaRelay,
        codecs: tuple[Codec, Codec, Codec],
        supervisor: SipUacLeg,
        supervisor_relay: MediaRelay,
        scheduler: PacedScheduler,
        name: str,
    ) -> Monitor:
        caller = Party("caller", codecs[0], call_relay.sender(Leg.A))
        answerer = Party("answerer", codecs[1], call_relay.sender(Leg.B))
        boss = Party(
            "supervisor",
            codecs[2],
            supervisor_relay.sender(Leg.A),
            listen_only=mode is MonitorMode.LISTEN,
            whisper_to=(answerer,) if mode is MonitorMode.WHISPER else (),
        )
        conference = Conference(scheduler, name=name)
        for party in (caller, answerer, boss):
            conference.add(party)
        call_relay.serve(Leg.A, caller.on_rtp)
        call_relay.serve(Leg.B, answerer.on_rtp)
        supervisor_relay.serve(Leg.A, boss.on_rtp)
        conference.start()
        return cls(mode, supervisor, supervisor_relay, conference, (caller, answerer, boss))

    async def stop(self, call_relay: MediaRelay) -> None:
        """The supervisor leaves: the two legs are bridged directly again."""
        self.conference.stop()
        call_relay.serve(Leg.A, None)
        call_relay.serve(Leg.B, None)
        self.relay.serve(Leg.A, None)
        await self.relay.stop()
