"""Reproducible measurements; see each module's docstring for the command that
reproduces its committed results."""
