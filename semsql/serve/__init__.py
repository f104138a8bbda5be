"""`semsql serve`: web pages and an HTTP API over the same SQL functions as every other surface.

Needs the serve extra (`pip install 'semsql[serve]'`); nothing else in semsql imports it.
"""

SERVE_EXTRA = "pip install 'semsql[serve]'"
