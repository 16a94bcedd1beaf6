"""The mapping in the admin: the pipelines' editor (`pipelines`), its impact preview (`preview`), the mapping
file's import and export (`file`) and the history of changes (`changes`). Importing it registers them."""

from . import changes, pipelines
from .pipelines import mapping_editor_url

__all__ = ["changes", "mapping_editor_url", "pipelines"]
