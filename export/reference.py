"""The source model's own outputs on held-out data: what every variant is compared with in the parity gate.

Tensors are paired with the spec by name (convert.pair, the same rule the conversion renames by), never by sorted
order. TensorFlow is imported inside the functions that need it, so a no-op export never pays for it.
"""

from __future__ import annotations

import os

import numpy as np

from core.errors import IncompatibleModelError
from core.heldout import Dataset
from core.spec import ModelSpec
from export.convert import pair

SIGNATURE = "serving_default"  # the signature tf2onnx converts (convert.tf2onnx_convert)


def reference_outputs(model: ModelSpec, data: Dataset) -> dict[str, np.ndarray]:
    """The source model's outputs on data, keyed by the spec's output names."""
    fmt = model.source.onnx.source_format
    if fmt == "onnx":
        return _onnx(model, data)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return _keras(model, data) if fmt == "keras" else _saved_model(model, data)


def _onnx(model: ModelSpec, data: Dataset) -> dict[str, np.ndarray]:
    from export.verify import run_onnx, session

    sess = session(model.source.onnx.source.read_bytes())
    where = f"ONNX file {model.source.onnx.source.name}"
    inputs = pair(model, "input", model.inputs, [i.name for i in sess.get_inputs()], where)
    outputs = pair(model, "output", model.outputs, [o.name for o in sess.get_outputs()], where)
    outs = data.map(lambda x: run_onnx(sess, {name: x[t.name] for t, name in inputs}, batch_size=len(data),
                                       output_names=[name for _, name in outputs]))
    return {t.name: outs[name] for t, name in outputs}


def _keras(model: ModelSpec, data: Dataset) -> dict[str, np.ndarray]:
    import keras

    if model.source.onnx.keras_text_layer:  # the numeric rest, token ids in: its held-out ids are the layer's own
        from export import keras_text

        net = keras_text.split(model)[2]
    else:
        net = keras.saving.load_model(model.source.onnx.source, compile=False)
    inputs = dict((name, t) for t, name in pair(model, "input", model.inputs, [i.name for i in net.inputs],
                                                f"Keras model {model.source.onnx.source.name}"))

    def predict(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = [x[inputs[i.name].name] for i in net.inputs]  # in the model's own input order
        outs = net.predict(feed if len(feed) > 1 else feed[0], batch_size=256, verbose=0)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        if len(outs) != len(model.outputs):
            raise IncompatibleModelError(f"{model.name}: Keras model {model.source.onnx.source.name} has {len(outs)} "
                                         f"output(s), the spec declares {len(model.outputs)}: fix [[model.output]]")
        # Keras outputs are ordered (the SavedModel calls them output_0, output_1, ...): the spec declares them so.
        return {t.name: np.asarray(o) for t, o in zip(model.outputs, outs)}
    return data.map(predict)


def _saved_model(model: ModelSpec, data: Dataset) -> dict[str, np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model.source.onnx.source))
    if SIGNATURE not in loaded.signatures:
        raise IncompatibleModelError(f"{model.name}: SavedModel {model.source.onnx.source} has no {SIGNATURE!r} "
                                     f"signature (it has {', '.join(loaded.signatures) or 'none'}); export it with one")
    fn = loaded.signatures[SIGNATURE]
    where = f"SavedModel signature {SIGNATURE!r}"
    inputs = pair(model, "input", model.inputs, list(fn.structured_input_signature[1]), where)

    def call(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = fn(**{name: tf.constant(x[t.name]) for t, name in inputs})
        outputs = pair(model, "output", model.outputs, list(result), where)
        return {t.name: result[name].numpy() for t, name in outputs}
    return data.map(call)
