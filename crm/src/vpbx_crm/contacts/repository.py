"""The tenant's contacts, scoped (``repository.Scoped``)."""

from __future__ import annotations

from ..repository import Scoped
from .models import ContactRow


class Contacts(Scoped[ContactRow]):
    model = ContactRow
    label = "contact"
