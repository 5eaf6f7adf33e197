"""Detached instances: a monitor process per instance, state files, console logs, restarts.

state.py (folders, spec.json, state.json, names and IDs), monitor.py (the monitor process),
supervise.py (why nothing outlives a monitor), restart.py (policies and backoff),
console.py (the bounded console log), control.py (the monitor's socket), lifecycle.py (what
the CLI does: start, stop, remove, sample, reconcile).
"""
