"""`python -m cli`: the same entry point as the `restyler` console script."""

from cli.main import main

raise SystemExit(main())
