"""The deployments people usually build instead of Triton, serving the same model.onnx (see bench/servers.py)."""
