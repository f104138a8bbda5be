"""The `semsql` command group; each noun lives in its own module."""

import click

from semsql import __version__
from semsql.cli.db import db
from semsql.cli.duplicates import duplicates
from semsql.cli.errors import user_errors
from semsql.cli.eval import eval_command
from semsql.cli.ingest import ingest
from semsql.cli.init import init
from semsql.cli.jobs import jobs
from semsql.cli.models import models
from semsql.cli.people import people
from semsql.cli.search import search
from semsql.cli.serve import serve
from semsql.cli.show import show
from semsql.cli.status import status
from semsql.cli.worker import worker


class SemsqlGroup(click.Group):
    """Every command's user errors (cli/errors.py) as one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> object:
        with user_errors():
            return super().invoke(ctx)


@click.group(cls=SemsqlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="semsql")
def cli() -> None:
    """Search a library of images by meaning, inside PostgreSQL.

    \b
    Quick start:
      semsql init                    # embedded PostgreSQL + pgvector, schema
      semsql ingest ~/Pictures -r    # a job: hashes, probes, stores, queues enrichment
      semsql jobs                    # what happened
      psql "$(semsql db url)"        # the tables, for SQL and BI tools

    \b
    Exit status: 0 on success; 1 on an error, said in one line on stderr
    (`semsql ingest`: also when a file could not be stored); 2 on a usage error.
    """


for command in (init, db, ingest, jobs, worker, status, search, people, models, eval_command):
    cli.add_command(command)
cli.add_command(duplicates)
cli.add_command(serve)
cli.add_command(show)
