"""The Django admin: the mapping (editable), the catalog of names, links, pending work and the read-only audit
log.

One module per audience's page; importing them registers them with the admin site.
"""

from django.contrib import admin

from . import applications, audit, catalog, links, mapping, work

# The admin is bxsync's only site: no "View site" link to a page that does not exist.
admin.site.site_url = None

__all__ = ["applications", "audit", "catalog", "links", "mapping", "work"]
