"""Schema versions of the stand-in release (Synapse's synapse.storage.schema)."""

SCHEMA_VERSION = 84
"""The schema version this release upgrades databases to."""

SCHEMA_COMPAT_VERSION = 83
"""The oldest schema version whose code can use a database of this release."""
