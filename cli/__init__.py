"""The `restyler` command: one module per command (play, capture, restyle, record_data, train, eval, bench,
generate), assembled by cli.main. The only package that imports all the others.
"""
