"""Restyler's model side: math on tensors (autoencoder, video transformer, KV cache, flow schedule, prompt encoder),
training and distillation, checkpoint I/O, and the training data reader (models.data).

Imports none of demo_game, bridge or renderer; importing the package itself stays cheap, so submodules are imported
explicitly (e.g. `from models.data import make_loader`).
"""
