"""The tenant's people as an import names them: by e-mail or by name (or the export's id)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..identity import TenantDirectory
from .cells import CellError


@dataclass(frozen=True)
class Owners:
    """Built from one read of the tenant's directory: an import of 100,000 rows asks the
    control API once, whatever the number of owners named."""

    by_key: dict[str, uuid.UUID | None]  # None: several people answer to it
    emails: dict[uuid.UUID, str]

    @classmethod
    def of(cls, directory: TenantDirectory) -> Owners:
        by_key: dict[str, uuid.UUID | None] = {}
        emails: dict[uuid.UUID, str] = {}
        for user in directory.directory.users:
            user_id = uuid.UUID(user.id)
            emails[user_id] = user.email
            by_key[user.id.casefold()] = user_id
            by_key[user.email.casefold()] = user_id
            name = " ".join(user.name.casefold().split())
            # Two people may share a name; only their e-mails tell them apart then.
            by_key[name] = None if name in by_key and by_key[name] != user_id else user_id
        return cls(by_key, emails)

    def find(self, written: str) -> uuid.UUID:
        key = " ".join(written.casefold().split())
        if key not in self.by_key:
            raise CellError(f"{written!r} is nobody in your company's directory")
        found = self.by_key[key]
        if found is None:
            raise CellError(f"several people are called {written!r}: give the e-mail")
        return found

    def label(self, user_id: uuid.UUID | None) -> str:
        """How an export names the owner: the e-mail (unique), the id of somebody gone."""
        if user_id is None:
            return ""
        return self.emails.get(user_id, str(user_id))
