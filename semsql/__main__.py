"""`python -m semsql`: the `semsql` command, for when the console script is not on PATH."""

from semsql.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="semsql")
