"""`python -m renderer`: the same entry point as the `restyler` console script."""

from renderer.cli import main

raise SystemExit(main())
