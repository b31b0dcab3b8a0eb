"""`python -m renderer`: kept as an alias of the `restyler` console script (cli.main). An entry point, not part of
the plugin: nothing in the plugin imports the CLI."""

from cli.main import main

raise SystemExit(main())
