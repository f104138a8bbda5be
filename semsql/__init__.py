"""semsql: search a library of images by meaning, inside PostgreSQL."""

__version__ = "0.1.0"
