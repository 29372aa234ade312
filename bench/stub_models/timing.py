"""The backend-cost benchmark's timing wrapper, deployed as a copy's model.py: serves the model of timing.json's
`impl` unchanged and keeps, in timing-totals.json beside this file, the CPU time of every execute() and of the model's
own work in it (the functions timing.json's `work` names, wrapped in place once the model is initialized)."""
import importlib.util
import json
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "timing.json")) as file:
    SETUP = json.load(file)
_spec = importlib.util.spec_from_file_location("timed_model", SETUP["impl"])
impl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(impl)
TOTALS = {"executions": 0, "execute_cpu_ns": 0, "work_cpu_ns": 0}


def timed(function):
    def call(*args, **kwargs):
        start = time.process_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            TOTALS["work_cpu_ns"] += time.process_time_ns() - start
    return call


class TritonPythonModel(impl.TritonPythonModel):
    def initialize(self, args):
        if SETUP["model_file"]:  # the onnxruntime backend reads its file name from the config the python one uses
            config = json.loads(args["model_config"])
            config["default_model_filename"] = SETUP["model_file"]
            args = dict(args, model_config=json.dumps(config))
        super().initialize(args)
        for path in SETUP["work"]:  # "session.run" on the instance, "text_encoding.encode_texts" in the module
            head, *middle, name = path.split(".")
            owner = getattr(self, head) if hasattr(self, head) else getattr(impl, head)
            for part in middle:
                owner = getattr(owner, part)
            setattr(owner, name, timed(getattr(owner, name)))
        self.written = time.monotonic()

    def execute(self, requests):
        start = time.process_time_ns()
        responses = super().execute(requests)
        TOTALS["execute_cpu_ns"] += time.process_time_ns() - start
        TOTALS["executions"] += 1
        if time.monotonic() - self.written > 0.2:
            self.write()
        return responses

    def write(self):
        self.written = time.monotonic()
        with open(os.path.join(HERE, "timing-totals.json.tmp"), "w") as file:
            json.dump(TOTALS, file)
        os.replace(os.path.join(HERE, "timing-totals.json.tmp"), os.path.join(HERE, "timing-totals.json"))
