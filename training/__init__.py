"""Training scripts, one per model family: `python -m training FAMILY --preset NAME ...`."""
