"""Restyler's learned side, in four layers; each imports only the ones above it in this list:

    models.io          files: atomic writes, checkpoints, the recorded-data reader, PNG grids
    models.network     the networks, their samplers and KV cache, loading trained ones
    models.evaluation  metrics and scorers (`restyler eval`, generation and teacher checks)
    models.recipe      the training recipe: one loop, one module per stage in recipe order, export

Imports none of bridge, renderer, demo_game or restyler (tests/test_layers.py checks every import). Importing the
package itself stays cheap, so submodules are imported explicitly (e.g. `from models.io.data import make_loader`).
"""
