"""The Django admin: the mapping (editable), the catalog of names, links, pending work and the read-only audit
log.

One module per audience's page; importing them registers them with the admin site.
"""

from . import audit, catalog, links, mapping, mapping_changes, work

__all__ = ["audit", "catalog", "links", "mapping", "mapping_changes", "work"]
