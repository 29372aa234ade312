"""Datasets the reference models are trained on, loaded into numpy arrays."""
