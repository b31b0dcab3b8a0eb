"""Files in and out, with no model math: atomic writes, checkpoints (safetensors + JSON), the recorded-data reader
and PNG grids. Imports nothing else of the project, so every other layer may use it.
"""
