"""modelport: a thin, typed client for models served by Triton Inference Server."""
