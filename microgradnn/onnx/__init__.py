"""``mg.onnx``: export a model to ONNX, as ``torch.onnx.export``.

::

    mg.onnx.export(model, (x, None, lengths), "model.onnx",
                   input_names=["input", "lengths"], dynamic_axes={"input": {0: "batch", 1: "time"}})

The exporter walks the model's Modules (it does not trace Python code) and emits ONNX's
own operators: ``LSTM``/``GRU``/``RNN`` for the recurrent layers, ``Gather`` for
``Embedding``, ``MatMul``+``Add`` for ``Linear``, ``LayerNormalization``, the activations,
``Sequential`` as a chain, and :class:`~microgradnn.models.SequenceModel`. Fine-tuned
weights (LoRA, IA3: parametrizations) are read as the effective weights, so a model exports
the same merged or not. Anything else is refused with one error naming the module.

Needs the ``onnx`` extra (``pip install 'microgradnn[onnx]'``); :mod:`.exporter` imports it
only when called.
"""

from .exporter import OnnxExportError, export, register_converter, supported_modules
from .run import export_run

__all__ = ["export", "export_run", "OnnxExportError", "register_converter", "supported_modules"]
