"""Export a model's serving signatures and run them the way TensorFlow Serving does."""
from pathlib import Path
from typing import Callable

import keras
import numpy as np


def export_and_load(model: keras.Model, directory: Path) -> Callable[..., dict[str, np.ndarray]]:
    """Write `model.serving_signatures()` with keras.export.ExportArchive into `directory`, load
    it with the server's session-based loader (serving.servable.Servable: the meta graph tagged
    'serve', restore and init ops, a raw Session run on the signature's tensor names), and
    return run(signature, **inputs) -> {output alias: array}."""
    from serving.servable import Servable

    archive = keras.export.ExportArchive()
    archive.track(model)
    for signature, (function, specs) in model.serving_signatures().items():
        archive.add_endpoint(signature, function, input_signature=specs)
    archive.write_out(str(directory), verbose=False)
    servable = Servable("model", 1, Path(directory))

    def run(signature: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        definition = servable.signature(signature)
        return servable.run(definition, inputs, sorted(definition.outputs))

    run.signatures = sorted(n for n in servable.signatures if not n.startswith("__"))
    return run
