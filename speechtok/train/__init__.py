"""Training: configs, the loop, distributed setup and resumable training state."""
