"""The Django admin: the mapping (editable), the catalog of names, links, pending work and the read-only audit
log.

One module per audience's page; importing them registers them with the admin site.
"""

from . import applications, audit, catalog, links, mapping, work

__all__ = ["applications", "audit", "catalog", "links", "mapping", "work"]
