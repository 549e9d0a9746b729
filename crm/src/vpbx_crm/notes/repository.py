"""The tenant's notes, scoped (``repository.Scoped``)."""

from __future__ import annotations

from ..repository import Scoped
from .models import NoteRow


class Notes(Scoped[NoteRow]):
    model = NoteRow
    label = "note"
