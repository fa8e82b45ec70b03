"""Server-side batching: merged along dimension 0, the same numbers back, the real server's limits."""
import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving.batching import Batcher, BatchOptions
from serving.errors import ServingError
from serving.metrics import Metrics
from serving.tensors import to_proto
from tests.serving.conftest import write_config


class FakeServable:
    """Doubles its input and records the batch sizes it ran; slow enough for a queue to build up."""

    def __init__(self, seconds=0.05):
        self.seconds, self.batches = seconds, []

    def run(self, signature, inputs, aliases, timeout=None):
        self.batches.append(len(inputs["x"]))
        time.sleep(self.seconds)
        return {"y": inputs["x"] * 2}


def run_tasks(options, sizes, servable, stagger=0.0):
    async def main():
        executor = ThreadPoolExecutor(2)

        async def run(servable, signature, inputs, aliases, timeout):
            return await asyncio.get_running_loop().run_in_executor(executor, servable.run, signature, inputs, aliases)
        batcher = Batcher(options, run, Metrics())

        async def one(i, size):
            await asyncio.sleep(stagger * i)
            x = np.arange(size, dtype=np.float32) + 100 * i
            return await batcher.run(servable, "s", None, {"x": x}, ["y"], None)
        return await asyncio.gather(*(one(i, s) for i, s in enumerate(sizes)), return_exceptions=True)
    return asyncio.run(main())


def test_batches_merge_and_split_back():
    servable = FakeServable()
    results = run_tasks(BatchOptions(max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1),
                        [1, 2, 3, 1, 4, 2], servable)
    for i, (size, result) in enumerate(zip([1, 2, 3, 1, 4, 2], results)):
        np.testing.assert_array_equal(result["y"], (np.arange(size) + 100 * i) * 2)
    assert servable.batches == [7, 6]  # 1+2+3+1 = 7 (4 more would pass 8), then 4+2


def test_allowed_batch_sizes_pad_and_slice():
    servable = FakeServable()
    results = run_tasks(BatchOptions(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1,
                                     allowed_batch_sizes=(4, 8)), [1, 2], servable)
    assert servable.batches == [4]
    np.testing.assert_array_equal(results[1]["y"], (np.arange(2) + 100) * 2)


def test_oversized_task_and_full_queue_get_the_real_servers_errors():
    servable = FakeServable(seconds=0.3)
    options = BatchOptions(max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1)
    results = run_tasks(options, [3], servable)
    assert isinstance(results[0], ServingError) and results[0].code == grpc.StatusCode.INVALID_ARGUMENT
    assert results[0].message == "Task size 3 is larger than maximum input batch size 2"
    results = run_tasks(options, [2, 2, 2, 2], servable, stagger=0.01)
    full = [r for r in results if isinstance(r, ServingError)]
    assert full and all(r.code == grpc.StatusCode.UNAVAILABLE and
                        r.message == "The batch scheduling queue to which this task was submitted is full" for r in full)
    assert any(isinstance(r, dict) for r in results)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="allowed_batch_sizes"):
        BatchOptions(max_batch_size=8, allowed_batch_sizes=(4, 6)).check()


def test_served_batching_merges_and_matches_unbatched(start_server, smoke_export, tmp_path):
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 16 } batch_timeout_micros { value: 20000 } "
                      "num_batch_threads { value: 1 } max_enqueued_batches { value: 100 }")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    config = write_config(tmp_path / "models.config", {"vae": smoke_export.parent})
    server = start_server(f"--model_config_file={config}", "--enable_batching",
                          f"--batching_parameters_file={params}", f"--monitoring_config_file={monitoring}",
                          wait_for=("vae",))
    z = np.random.default_rng(0).normal(size=(48, 2)).astype(np.float32)

    def decode(row):
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "vae", "decode"
        request.inputs["z"].CopyFrom(to_proto(z[row:row + 1]))
        return tf.make_ndarray(server.stub.Predict(request, timeout=30).outputs["images"])

    def runs() -> int:
        page = server.rest("/monitoring/prometheus/metrics")[1]
        found = re.search(r"^:tensorflow:serving:batching_session:wrapped_run_count\{\} (\d+)$", page, re.M)
        return int(found.group(1)) if found else 0

    before = runs()
    barrier = threading.Barrier(16)

    def client(rows):
        barrier.wait()
        return [decode(row) for row in rows]
    with ThreadPoolExecutor(16) as pool:
        parts = list(pool.map(client, [range(i, 48, 16) for i in range(16)]))
    served = np.zeros((48, 28, 28, 1), np.float32)
    for i, part in enumerate(parts):
        served[i::16] = np.concatenate(part)
    assert runs() - before < 48  # fewer session runs than requests: they were merged
    reference = tf.saved_model.load(str(smoke_export)).signatures["decode"]
    expected = np.concatenate([reference(z=tf.constant(z[i:i + 1]))["images"].numpy() for i in range(48)])
    # Merging and splitting copy rows exactly (the FakeServable tests); the numbers differ from
    # batch-1 calls only by float rounding, because matmul kernels sum in another order for
    # another batch size (1 ulp here), as they do under TensorFlow Serving's batching.
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "vae", "decode"
    request.inputs["z"].CopyFrom(to_proto(np.zeros((17, 2), np.float32)))
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Task size 17 is larger than maximum input batch size 16"
    status, body, _ = server.rest("/v1/models/vae:predict", {"signature_name": "decode", "inputs": np.zeros((17, 2)).tolist()})
    assert status == 400 and body["error"] == "Task size 17 is larger than maximum input batch size 16"
