"""What marshmallow cannot say in the spec by itself: JSON Schema keywords such as
`minProperties` on a schema or `propertyNames` on a field, given as `json_schema` (in a
schema's `Meta`, or in a field's metadata)."""

from apispec import BasePlugin


class SchemaExtras(BasePlugin):
    """Adds a schema's `Meta.json_schema` to its component."""

    def schema_helper(self, name, definition, **kwargs):
        meta = getattr(kwargs.get("schema"), "Meta", None)
        return dict(getattr(meta, "json_schema", {}))


def field_extras(self, field, **kwargs) -> dict:
    """An apispec attribute function: a field's `json_schema` metadata, as given."""
    return dict(field.metadata.get("json_schema", {}))
