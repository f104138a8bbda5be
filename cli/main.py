"""The `semsql` command group; each noun lives in its own module."""

import click

from semsql import __version__
from semsql.cli.db import db
from semsql.cli.ingest import ingest
from semsql.cli.init import init
from semsql.cli.jobs import jobs
from semsql.cli.people import people
from semsql.cli.search import search
from semsql.cli.status import status
from semsql.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="semsql")
def cli() -> None:
    """Search a library of images by meaning, inside PostgreSQL.

    \b
    Quick start:
      semsql init                    # embedded PostgreSQL + pgvector, schema
      semsql ingest ~/Pictures -r    # a job: hashes, probes, stores, queues enrichment
      semsql jobs                    # what happened
      psql "$(semsql db url)"        # the tables, for SQL and BI tools
    """


for command in (init, db, ingest, jobs, worker, status, search, people):
    cli.add_command(command)
