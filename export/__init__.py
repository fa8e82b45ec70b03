"""Versioned SavedModels that TensorFlow Serving loads: `python -m export RUN_DIR ...` writes
one, `python -m export verify MODELS/NAME[/VERSION]` checks one the way the server loads it."""
