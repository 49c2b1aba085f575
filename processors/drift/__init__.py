"""Drift checks: is a station's input, or the model's output on it, still what it was?

One implementation (checks.py over the summaries of summary.py, windows.py, station.py)
serves the faust-streaming app over the detections topic (stream.py, `soundscape drift
run`) and the batch checks over PostgreSQL (batch.py, `soundscape drift check`).
"""
