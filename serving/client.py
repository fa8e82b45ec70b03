"""A client for TensorFlow Serving's gRPC API that speaks numpy.

It uses only the official `tensorflow-serving-api` stubs and protos, so it works the same
against this project's server and against `tensorflow_model_server`:

    with Client("127.0.0.1:8500") as client:
        images = client.sample_images("vae", seeds=range(16))
        actions = client.act("cartpole_dqn", [[0.1, 0.0, 0.2, 0.0]])
"""
from __future__ import annotations

import time
from typing import Iterable, Mapping

import grpc
import numpy as np
from google.protobuf import text_format
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import CODES, ServingError
from serving.tensors import DTYPES, to_ndarray, to_proto

STATES = {v.number: v.name for v in get_model_status_pb2.ModelVersionStatus.State.DESCRIPTOR.values}


def _call(method, request, timeout: float | None):
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as error:
        raise ServingError(error.code(), error.details() or "") from None


class Client:
    """Predict, metadata, status and reload over one channel; replies come back as numpy arrays."""

    def __init__(self, target: str = "127.0.0.1:8500", timeout: float | None = 30.0):
        # replies of large image batches pass the 4 MiB default, as the real server allows
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 2**31 - 1),
                                                              ("grpc.max_send_message_length", 2**31 - 1)])
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.timeout = timeout
        self._inputs: dict[tuple[str, str], dict] = {}

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, model: str, timeout: float = 60.0) -> None:
        """Block until `model` has an AVAILABLE version (the server may still be starting)."""
        end = time.monotonic() + timeout
        while True:
            try:
                if any(v["state"] == "AVAILABLE" for v in self.status(model)):
                    return
            except ServingError as error:
                if time.monotonic() > end:
                    raise ServingError(error.code, f"{model} did not become available in {timeout:g} s: "
                                       f"{error.message}") from None
            if time.monotonic() > end:
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{model} did not become available")
            time.sleep(0.2)

    @staticmethod
    def _spec(spec, model: str, signature: str | None, version: int | None, label: str | None) -> None:
        spec.name = model
        if signature:
            spec.signature_name = signature
        if version is not None:
            spec.version.value = version
        elif label is not None:
            spec.version_label = label

    def predict(self, model: str, inputs: Mapping[str, object], signature: str | None = None,
                version: int | None = None, label: str | None = None,
                output_filter: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Outputs by alias. Inputs keep their numpy dtype: send float32 where the signature wants float."""
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, signature, version, label)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(to_proto(np.asarray(value), as_content=True))
        request.output_filter.extend(output_filter)
        response = _call(self.predictions.Predict, request, self.timeout)
        return {alias: to_ndarray(proto, alias) for alias, proto in response.outputs.items()}

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """SignatureDefs by name (the `signature_def` metadata field)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, None, version, label)
        response = _call(self.predictions.GetModelMetadata, request, self.timeout)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return dict(signatures.signature_def)

    def status(self, model: str, version: int | None = None) -> list[dict]:
        """[{version, state, error_code, error_message}], highest version first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, None, version, None)
        response = _call(self.models.GetModelStatus, request, self.timeout)
        return [{"version": s.version, "state": STATES[s.state],
                 "error_code": CODES[s.status.error_code].name,
                 "error_message": s.status.error_message} for s in response.model_version_status]

    def reload(self, config: model_server_config_pb2.ModelConfigList | str) -> None:
        """Replace the server's model list (a ModelConfigList, or its text form)."""
        if isinstance(config, str):
            config = text_format.Parse(config, model_server_config_pb2.ModelConfigList())
        request = model_management_pb2.ReloadConfigRequest()
        request.config.model_config_list.CopyFrom(config)
        _call(self.models.HandleReloadConfigRequest, request, self.timeout)

    def _input_names(self, model: str, signature: str) -> dict:
        if (model, signature) not in self._inputs:
            self._inputs[(model, signature)] = dict(self.metadata(model)[signature].inputs)
        return self._inputs[(model, signature)]

    def sample_images(self, model: str, seeds: Iterable[int], labels: Iterable[int] | None = None,
                      signature: str = "sample") -> np.ndarray:
        """Images [n, H, W, C] in [0, 1], one per seed (the same seed gives the same image)."""
        inputs = {"seed": np.asarray(list(seeds), dtype=np.int64)}
        if labels is not None:
            inputs["label"] = np.asarray(list(labels), dtype=np.int64)
        return self.predict(model, inputs, signature=signature)["images"]

    def complete_images(self, model: str, images, known_rows: Iterable[int], seeds: Iterable[int],
                        labels: Iterable[int] | None = None, signature: str = "complete") -> np.ndarray:
        """Each image's first `known_rows` rows kept and the rest sampled (an autoregressive model's `complete`)."""
        inputs = {"images": np.asarray(images, dtype=np.float32),
                  "known_rows": np.asarray(list(known_rows), dtype=np.int64),
                  "seed": np.asarray(list(seeds), dtype=np.int64)}
        if labels is not None:
            inputs["label"] = np.asarray(list(labels), dtype=np.int64)
        return self.predict(model, inputs, signature=signature)["images"]

    def act(self, model: str, observations, seed: int | Iterable[int] | None = None,
            signature: str = "serving_default") -> np.ndarray:
        """Actions for a batch of observations (in the signature's dtype: float32 vectors, uint8
        frames); policies that sample get a seed per row."""
        names = self._input_names(model, signature)
        dtype = DTYPES[names["observation"].dtype][0] if "observation" in names else np.float32
        observations = np.asarray(observations, dtype=dtype)
        inputs = {"observation": observations}
        if "seed" in names:
            seeds = np.arange(len(observations)) if seed is None else np.broadcast_to(seed, len(observations))
            inputs["seed"] = np.asarray(seeds, dtype=np.int64)
        return self.predict(model, inputs, signature=signature, output_filter=["action"])["action"]
