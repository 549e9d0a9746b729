"""The tenant's conference rooms on this node: one mixer per room extension.

A room lives in the node, not in the tenant: each node of the tenant (one per city)
has its own room per extension, so callers served by another city's node meet in
that node's room. Here a room exists while somebody holds a place in it:

- ``admit`` gives a caller a ``Seat`` when the room has a free place (callers still
  keying in the PIN hold one too, so that a room never overfills while they type),
  or None when it is full;
- ``Seat.join`` puts the caller's ``Party`` into the room's ``Conference``; the first
  one to join starts it on the node's paced scheduler;
- ``Seat.leave`` takes the party out again; when the last place is given back the
  conference stops and the room is forgotten.

Everything runs on the node's event loop; nothing here awaits.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from vpbx_common.nodeconfig import ConferenceRoomEntry

from ..media.mixer import Conference, ConferenceState, Party
from ..media.scheduler import PacedScheduler

logger = logging.getLogger(__name__)


class RoomsState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RoomStats:
    extension: str
    places_taken: int  # callers admitted: in the room or on their way in (PIN)
    participants: int  # callers in the room, mixed
    ticks: int


class _Room:
    def __init__(self, extension: str, conference: Conference) -> None:
        self.extension = extension
        self.conference = conference
        self.seats: dict[str, Seat] = {}  # call id -> its place


class Seat:
    """One caller's place in a room, from admission until they leave (``leave`` is
    idempotent: the call gives its place back whichever way it ends)."""

    def __init__(self, rooms: ConferenceRooms, room: _Room, call_id: str) -> None:
        self._rooms = rooms
        self._room = room
        self.call_id = call_id
        self.party: Party | None = None
        self._left = False

    @property
    def room(self) -> str:
        return self._room.extension

    @property
    def participants(self) -> int:
        """Callers in the room now (this one included once joined)."""
        return len(self._room.conference)

    def join(self, party: Party) -> None:
        """Mix ``party`` in the room from the next tick on."""
        if self._left:
            raise RuntimeError(f"call {self.call_id} gave its place in {self.room} back")
        if self.party is not None:
            raise RuntimeError(f"call {self.call_id} is in {self.room} already")
        conference = self._room.conference
        conference.add(party)
        self.party = party
        if conference.state is ConferenceState.NEW and self._rooms.running:
            conference.start()

    def leave(self) -> None:
        """Out of the room; the last one out closes it."""
        if self._left:
            return
        self._left = True
        if self.party is not None:
            self._room.conference.remove(self.party)
        self._rooms._release(self._room, self.call_id)


class ConferenceRooms:
    """The registry of the node's rooms (owned by the node service: ``start``/``stop``
    with it)."""

    def __init__(self, scheduler: PacedScheduler, tenant: str) -> None:
        self._scheduler = scheduler
        self._tenant = tenant
        self._rooms: dict[str, _Room] = {}
        self._state = RoomsState.NEW

    @property
    def running(self) -> bool:
        return self._state is RoomsState.RUNNING

    def _set_state(self, state: RoomsState) -> None:
        logger.info("tenant=%s conference rooms %s -> %s", self._tenant, self._state, state)
        self._state = state

    def start(self) -> None:
        if self._state is RoomsState.NEW:
            self._set_state(RoomsState.RUNNING)

    def stop(self) -> None:
        """Stop every room's mixer (the calls in them end with the node)."""
        if self._state is RoomsState.STOPPED:
            return
        self._set_state(RoomsState.STOPPED)
        for room in self._rooms.values():
            room.conference.stop()
        self._rooms.clear()

    def admit(self, entry: ConferenceRoomEntry, call_id: str) -> Seat | None:
        """A place in ``entry``'s room for ``call_id``; None when every place is taken
        (or the node is stopping)."""
        if self._state is RoomsState.STOPPED:
            return None
        room = self._rooms.get(entry.extension)
        if room is None:
            conference = Conference(self._scheduler, name=f"{self._tenant}/{entry.extension}")
            room = self._rooms[entry.extension] = _Room(entry.extension, conference)
        if call_id in room.seats:
            return room.seats[call_id]
        if len(room.seats) >= entry.max_participants:
            logger.info(
                "call=%s tenant=%s conference %s full: %d of %d places taken",
                call_id,
                self._tenant,
                entry.extension,
                len(room.seats),
                entry.max_participants,
            )
            return None
        seat = room.seats[call_id] = Seat(self, room, call_id)
        return seat

    def places_taken(self, extension: str) -> int:
        room = self._rooms.get(extension)
        return len(room.seats) if room is not None else 0

    def participants(self, extension: str) -> int:
        room = self._rooms.get(extension)
        return len(room.conference) if room is not None else 0

    def __contains__(self, extension: object) -> bool:
        return extension in self._rooms

    def stats(self) -> list[RoomStats]:
        return [
            RoomStats(
                extension=room.extension,
                places_taken=len(room.seats),
                participants=len(room.conference),
                ticks=room.conference.ticks,
            )
            for room in sorted(self._rooms.values(), key=lambda room: room.extension)
        ]

    def _release(self, room: _Room, call_id: str) -> None:
        room.seats.pop(call_id, None)
        if not room.seats and self._rooms.get(room.extension) is room:
            self._forget(room)

    def _forget(self, room: _Room) -> None:
        room.conference.stop()
        del self._rooms[room.extension]
