"""`python -m semsql.cli`: the `semsql` command (as `python -m semsql`)."""

from semsql.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="semsql")
