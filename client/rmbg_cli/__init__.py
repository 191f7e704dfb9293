"""The ``rmbg`` command: a thin shell over the client library, the server launcher and export.

Each subcommand is its own module with ``add_parser`` and ``run``. Subcommands that need an
optional extra (server, export) import it when they run, and name the extra when it is missing.
"""
