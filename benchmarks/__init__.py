"""Pix Me! benchmarks: how much of a request's time is the bot's own work.

Run them with one command (see BENCHMARKS.md): `.venv/bin/python -m benchmarks.run [--quick]`.
"""
