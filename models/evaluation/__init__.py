"""Scoring: the quality metrics (metrics.py), `restyler eval`'s restyling rows, drift and style switch (restyle.py),
generation scores (generation.py), the teacher's own check (teacher.py) and the pixel-or-latent cost measurement
(latent_space.py). docs/evaluation.md defines every number. Imports models.io and models.network only.
"""
