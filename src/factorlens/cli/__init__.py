"""The ``factorlens`` command line.

Each module of this package (except ``main`` and private ``_x`` modules) is one subcommand and defines
``register(subparsers)``, which adds its parser and sets ``func`` (``args -> exit code``) as a default.
``factorlens.cli.main`` discovers them with ``pkgutil.iter_modules``: adding a command is adding a module.
"""
