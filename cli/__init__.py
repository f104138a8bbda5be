"""The `semsql` command line."""
