"""The code Triton's python backend runs: one module per python model, the helpers they share, and the ONNX Runtime
session our `onnxruntime` backend (tritonmodels/onnxruntime_backend.py) and the benchmarks build from a config.

Deployed, a model's folder must be self-contained (the stub ignores PYTHONPATH; it puts the model's version folder
on sys.path): the export copies the model's module as `1/model.py`, the files models.toml lists beside it and
model_config.py into every python model's version folder, so the modules import each other by their plain names.
The rest of the project imports the helpers that import nothing of ours (text_encoding, image_decoding,
hf_tokenization, text_vectorization, onnxruntime_session) as `tritonmodels.<name>`.
"""
