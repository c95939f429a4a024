"""The command line: `python -m bot` / `imagepull-bot`, offline input, check-config.

Top layer: it may use everything below (app, server, sim for the demo).
"""
