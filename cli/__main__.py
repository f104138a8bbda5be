from semsql.cli.main import cli

cli()
