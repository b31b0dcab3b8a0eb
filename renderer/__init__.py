"""Restyler's plugin side: the streaming runtime, the overlay, benchmarks and the `restyler` CLI.

Games import this package to restyle their frames; it knows no particular game. Importing it stays cheap (no torch,
no GL) so that the CLI starts instantly; the runtime classes live in their own modules.
"""
