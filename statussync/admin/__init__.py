"""The Django admin: the mapping (editable), links, pending work and the read-only audit log.

One module per audience's page; importing them registers them with the admin site.
"""

from . import audit, links, mapping, work

__all__ = ["audit", "links", "mapping", "work"]
