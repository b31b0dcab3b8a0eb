"""`python -m restyler`: the same entry point as the `restyler` console script."""

from restyler.main import main

raise SystemExit(main())
