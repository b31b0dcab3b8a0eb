"""The `restyler` command: one module per command (play, capture, restyle, record_data, train, eval, bench,
generate), assembled by restyler.main. The only package that imports all the others. Named after the command it
is, so that the installed package does not take a generic name like `cli` in a user's site-packages.
"""
