"""Fault injection against `python -m serving serve` (issue 18's closing figures); not a test.

Sends, to one server on 127.0.0.1, seeded streams of malformed gRPC and HTTP requests
(undecodable and truncated bytes, wrong dtypes and shapes, more than 64 dimensions, huge
repeated shapes, the init-op signature, MultiInference without or with odd tasks, 1 MB model
names, gzip claimed on plain bodies, JSON nested past 64 levels, bad paths), then long
requests with status probes beside them, then the oversized request, and counts: crashes,
hangs (no answer within 30 s), UNKNOWN/INTERNAL answers, HTTP 500s, the worst status-probe
latency while the long requests run, and the server's peak memory (VmHWM).

    .venv/bin/python -m benchmarks.serving_faults [--grpc 10000 --http 5000]
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_ERRORS = {"UNKNOWN", "INTERNAL", "DATA_LOSS"}


def export_spin(path: Path) -> None:
    """serving_default(steps[b]) -> value[b]: max(steps) iterations of a 64x64 matmul."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="steps")])
    def spin(steps):
        _, x = tf.while_loop(lambda i, x: i < tf.reduce_max(steps), lambda i, x: (i + 1, tf.tanh(x @ x + 0.1)),
                             (tf.constant(0, tf.int64), tf.eye(64) * 0.5))
        return {"value": tf.fill(tf.shape(steps), tf.reduce_sum(x))}
    module = tf.Module()
    module.spin = spin
    tf.saved_model.save(module, str(path), signatures={"serving_default": spin.get_concrete_function()})


def malformed_grpc(rng: random.Random):
    """(method, request bytes) of one malformed gRPC call."""
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, inference_pb2,
                                         predict_pb2)

    predict = "/tensorflow.serving.PredictionService/Predict"
    request = predict_pb2.PredictRequest()
    request.model_spec.name = rng.choice(["qnet", "decoder", "spin", "", "nope", "x" * 2**20 if rng.random() < 0.05
                                          else "qnet"])
    request.model_spec.signature_name = rng.choice(["", "serving_default", "__saved_model_init_op", "x"])
    tensor = tensor_pb2.TensorProto(dtype=rng.choice([0, 1, 2, 3, 7, 9, 10, 19, 20, 21, 999]))
    for _ in range(rng.choice([0, 1, 2, 3, 65, 70]) if rng.random() < 0.2 else rng.randint(0, 4)):
        tensor.tensor_shape.dim.add().size = rng.choice([0, 1, 2, 4, 16, -1, 2**31, 2**40, 20_000])
    kind = rng.randrange(4)
    if kind == 0:
        tensor.tensor_content = rng.randbytes(rng.randint(0, 64))
    elif kind == 1:
        tensor.float_val.extend(rng.random() for _ in range(rng.randint(0, 20)))
    elif kind == 2:
        tensor.int64_val.extend(rng.randint(-2**63, 2**63 - 1) for _ in range(rng.randint(0, 20)))
    else:
        tensor.string_val.extend(rng.randbytes(4) for _ in range(rng.randint(0, 4)))
    request.inputs[rng.choice(["observation", "z", "steps", "bogus"])].CopyFrom(tensor)
    data = request.SerializeToString()
    which = rng.randrange(10)
    if which == 0:
        return predict, rng.randbytes(rng.randint(1, 100))
    if which == 1:
        return predict, data[:rng.randint(0, max(0, len(data) - 1))] + b"\xff\xff"
    if which == 2:
        multi = inference_pb2.MultiInferenceRequest()
        for _ in range(rng.randint(0, 3)):
            task = multi.tasks.add(method_name=rng.choice(["tensorflow/serving/classify", "tensorflow/serving/regress",
                                                           "x", ""]))
            task.model_spec.name = rng.choice(["qnet", "", "decoder"])
            task.model_spec.signature_name = rng.choice(["", "__saved_model_init_op"])
        return "/tensorflow.serving.PredictionService/MultiInference", multi.SerializeToString()
    if which == 3:
        method = rng.choice(["Classify", "Regress", "GetModelMetadata"])
        body = rng.randbytes(rng.randint(0, 40)) if rng.random() < 0.5 else \
            get_model_metadata_pb2.GetModelMetadataRequest(model_spec=request.model_spec,
                                                           metadata_field=[rng.choice(["signature_def", "x"])]) \
            .SerializeToString()
        return f"/tensorflow.serving.PredictionService/{method}", body
    if which == 4:
        status = get_model_status_pb2.GetModelStatusRequest(model_spec=request.model_spec)
        return "/tensorflow.serving.ModelService/GetModelStatus", status.SerializeToString()
    return predict, data


PATHS = ["/v1/models/qnet:predict", "/v1/models/decoder:predict", "/v1/models/qnet:classify",
         "/v1/models/qnet:regress", "/v1/models/nope:predict", "/v1/models/qnet/versions/99999999999999999999:predict",
         "/v1/models/qnet/labels/x:predict", "/v1/models", "/v1/x", "/v1/models/qnet/metadata"]


def malformed_http(rng: random.Random) -> tuple[str, str, bytes, dict]:
    """(method, path, body, headers) of one malformed REST call."""
    headers = {}
    kind = rng.randrange(8)
    if kind == 0:
        body = rng.randbytes(rng.randint(0, 200))
    elif kind == 1:
        depth = rng.choice([63, 64, 65, 100, 899, 5000])
        body = ('{"instances": ' + "[" * depth + "1" + "]" * depth + "}").encode()
    elif kind == 2:
        body = json.dumps({"instances": [[rng.random()] * rng.choice([1, 3, 4, 16]) for _ in range(3)]}).encode()
        headers["Content-Encoding"] = "gzip"
        if rng.random() < 0.3:
            body = gzip.compress(body)
    elif kind == 3:
        body = json.dumps({rng.choice(["instances", "inputs", "x"]): rng.choice(
            [[], [[]], [{"b64": "%%%"}], [True, 1], ["a"], [[1, 2], [3]], {"observation": 1}, None, 1e400])}).encode()
    elif kind == 4:
        body = json.dumps({"signature_name": rng.choice(["__saved_model_init_op", 3, "x"]),
                           "instances": [[0.0] * 4]}).encode()
    elif kind == 5:
        body = json.dumps({"examples": rng.choice([[{"x": [1, "a"]}], [1], "x", [{"x": {"b64": "!"}}]])}).encode()
    elif kind == 6:
        body = json.dumps({"instances": [[0.0] * 16] * rng.choice([1, 10_001, 20_000])}).encode()
    else:
        body = b"instances = [1, 2]"
    return rng.choice(["POST", "POST", "GET", "PUT"]), rng.choice(PATHS), body, headers


def peak_rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) // 1024
    return values["VmRSS"], values["VmHWM"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grpc", type=int, default=10_000, help="malformed gRPC requests")
    parser.add_argument("--http", type=int, default=5_000, help="malformed HTTP requests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from quiet import quiet_tensorflow
    quiet_tensorflow()
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, \
        prediction_service_pb2_grpc

    from benchmarks.serving import export_models, free_port, start, wait_ready

    base = Path(tempfile.mkdtemp(prefix="serving-faults-"))
    models = export_models(base)
    export_spin(base / "spin" / "1")
    config = base / "models.config"
    config.write_text("model_config_list {" + "".join(
        f' config {{ name: "{n}" base_path: "{base / n}" model_platform: "tensorflow" }}'
        for n in [*models, "spin"]) + " }")
    port, rest_port = free_port(), free_port()
    server = start(["-m", "serving", "serve", f"--port={port}", f"--rest_api_port={rest_port}",
                    f"--model_config_file={config}"])
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 2**31 - 1)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    good = predict_pb2.PredictRequest()
    good.model_spec.name = "qnet"
    good.inputs["observation"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 4), np.float32)))
    try:
        wait_ready(stub, good)
        rng = random.Random(args.seed)
        codes: collections.Counter = collections.Counter()
        grpc_calls = [malformed_grpc(rng) for _ in range(args.grpc)]

        examples: list[str] = []

        def call_grpc(item):
            method, data = item
            try:
                channel.unary_unary(method)(data, timeout=30)
                return "OK"
            except grpc.RpcError as error:
                if error.code().name in SERVER_ERRORS and len(examples) < 5:
                    examples.append(f"{method} {data[:200]!r}: {error.code().name}: {error.details()[:300]}")
                return error.code().name
        start_time = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            codes.update(pool.map(call_grpc, grpc_calls))
        grpc_seconds = time.perf_counter() - start_time
        stub.Predict(good, timeout=30)

        statuses: collections.Counter = collections.Counter()
        http_calls = [malformed_http(rng) for _ in range(args.http)]

        def call_http(item):
            method, path, body, headers = item
            request = urllib.request.Request(f"http://127.0.0.1:{rest_port}{path}", data=body if method != "GET"
                                             else None, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    return reply.status
            except urllib.error.HTTPError as error:
                return error.code
            except (TimeoutError, urllib.error.URLError):
                return "hang"
        start_time = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            statuses.update(pool.map(call_http, http_calls))
        http_seconds = time.perf_counter() - start_time
        stub.Predict(good, timeout=30)

        # long requests (4 spins of about 10 s, one model) while a status probe runs every 50 ms
        spin = predict_pb2.PredictRequest()
        spin.model_spec.name = "spin"
        spin.inputs["steps"].CopyFrom(tf.make_tensor_proto(np.array([400_000], np.int64)))
        long_runs = [stub.Predict.future(spin, timeout=600) for _ in range(4)]
        probe = get_model_status_pb2.GetModelStatusRequest()
        probe.model_spec.name = "qnet"
        worst, probes = 0.0, 0
        while not all(call.done() for call in long_runs):
            t0 = time.perf_counter()
            models_stub.GetModelStatus(probe, timeout=60)
            stub.Predict(good, timeout=60)
            worst, probes = max(worst, time.perf_counter() - t0), probes + 1
            time.sleep(0.05)
        long_seconds = [call.result() and None for call in long_runs]

        # the oversized requests: 20,000 seeds in a few bytes, and the largest allowed (10,000 rows)
        before = peak_rss(server.pid)
        oversized = predict_pb2.PredictRequest()
        oversized.model_spec.name = "decoder"
        oversized.inputs["z"].dtype = 1
        oversized.inputs["z"].tensor_shape.dim.add().size = 20_000
        oversized.inputs["z"].tensor_shape.dim.add().size = 16
        oversized.inputs["z"].float_val.append(0.5)
        try:
            stub.Predict(oversized, timeout=120)
            refused = "served"
        except grpc.RpcError as error:
            refused = f"{error.code().name}: {error.details()[:80]}..."
        after_refused = peak_rss(server.pid)
        oversized.inputs["z"].tensor_shape.dim[0].size = 10_000
        stub.Predict(oversized, timeout=120)
        after_largest = peak_rss(server.pid)
        alive = server.poll() is None
        stub.Predict(good, timeout=30)
    finally:
        server.terminate()
        server.wait(60)
    del long_seconds
    print(f"machine: {os.getloadavg()[0]:.1f} load (1 min), {os.cpu_count()} cores")
    print(f"gRPC: {args.grpc} malformed requests in {grpc_seconds:.0f} s: " + ", ".join(
        f"{code} {count}" for code, count in codes.most_common()))
    print(f"  UNKNOWN/INTERNAL/DATA_LOSS: {sum(codes[c] for c in SERVER_ERRORS)}, "
          f"hangs (DEADLINE_EXCEEDED after 30 s): {codes['DEADLINE_EXCEEDED']}")
    for example in examples:
        print("  server error:", example)
    print(f"HTTP: {args.http} malformed requests in {http_seconds:.0f} s: " + ", ".join(
        f"{code} {count}" for code, count in statuses.most_common()))
    print(f"  5xx: {sum(c for s, c in statuses.items() if isinstance(s, int) and s >= 500)}, "
          f"hangs: {statuses['hang']}")
    print(f"long requests: worst status + 1-row Predict probe {worst * 1000:.0f} ms over {probes} probes")
    print(f"oversized (20,000 rows): {refused}; server RSS/peak MB before {before}, after {after_refused}, "
          f"after the largest allowed (10,000 rows, 31 MB of images) {after_largest}")
    print(f"server alive at the end: {alive}; exit code after SIGTERM {server.returncode}")


if __name__ == "__main__":
    main()
