"""The tenant's companies, scoped (``repository.Scoped``)."""

from __future__ import annotations

from ..repository import Scoped
from .models import CompanyRow


class Companies(Scoped[CompanyRow]):
    model = CompanyRow
    label = "company"
