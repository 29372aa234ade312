"""modelport: a thin, typed client for models served by Triton Inference Server, over HTTP or gRPC.

    import modelport
    client = modelport.Client("127.0.0.1:8000")
    print(client.classify_images("seven.png").label, client.sentiment("a moving film").label)
    print(client.predict("sentiment", "a moving film", top=2).prediction.scores)  # any model, labels from the server
"""

from .aio import AsyncClient
from .client import Client
from .errors import (AccessDenied, InferenceTimeout, InvalidInput, ModelNotFound, ModelportError, ServerError,
                     ServerUnavailable)
from .explain import Explanation
from .metadata import ModelInfo, ModelMetadata, TensorSpec
from .predictions import ModelOutput, Prediction
from .retry import RetryPolicy

__version__ = "0.1.0"
__all__ = [
    "AccessDenied", "AsyncClient", "Client", "Explanation", "InferenceTimeout", "InvalidInput", "ModelInfo",
    "ModelMetadata", "ModelNotFound", "ModelOutput", "ModelportError", "Prediction", "RetryPolicy", "ServerError",
    "ServerUnavailable", "TensorSpec",
]
