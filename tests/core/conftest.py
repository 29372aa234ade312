# The spec and held-out tests build their specs around the export tests' tiny Keras model.
from tests.export.conftest import tiny_model  # noqa: F401
