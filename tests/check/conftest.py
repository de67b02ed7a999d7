"""The version-file fixtures the schema and check tests share."""

from version_files import problems_of, write  # noqa: F401
