"""Where a phone number is: region look-up, destination class, local-presence caller ID.

Russian numbers resolve from the numbering-plan data shipped in ``data/`` (see
its README: what the data covers and where it comes from); other countries'
numbers from phonenumbers' geocoder, imported only when the first one is seen.
"""

from vpbx_common.phoneregion.destination import DestinationClass, destination_class
from vpbx_common.phoneregion.lookup import distance_km, region_for
from vpbx_common.phoneregion.model import PhoneRegion
from vpbx_common.phoneregion.presence import CallerIdChoice, CallerIdReason, LocalPresence

__all__ = [
    "CallerIdChoice",
    "CallerIdReason",
    "DestinationClass",
    "LocalPresence",
    "PhoneRegion",
    "destination_class",
    "distance_km",
    "region_for",
]
