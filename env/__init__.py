"""The pinned environment: one lock per supported Python (`make lock`, `python -m env.locks`)."""
