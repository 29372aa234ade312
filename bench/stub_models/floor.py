"""The backend-cost benchmark's `stub_floor`: answers each request with a ready tensor of zeros and reads nothing, so
what it costs per request is the stub's own share, which no model code can remove."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        output = json.loads(args["model_config"])["output"][0]
        self.name = output["name"]
        self.zeros = np.zeros([1, *map(int, output["dims"])], pb_utils.triton_string_to_numpy(output["data_type"]))

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(self.name, self.zeros)]) for _ in requests]
