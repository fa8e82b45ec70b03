"""Serving latency and throughput, side by side in one run.

Contenders, each at 1, 4 and 16 concurrent clients sending batch-1 Predict requests:
- in-process: the SavedModel's signature called in this process (numpy in, numpy out);
- ours: `python -m serving serve`, unbatched and with `--enable_batching`;
- minimal: a thread-pool `grpc.server` (16 workers) calling `tf.saved_model.load(...)
  .signatures[...]`, a design measured at about 900 requests/s on these machines.

Models: a small policy (MLP 4-64-64-2) and a VAE-style decoder (16 -> 28x28x1), both
exported with ExportArchive. The client is this process: N threads on one shared channel,
100 warm-up calls, then a fixed number of requests; rounds are interleaved and medians
reported.

The large-body case (issue 17): one 224x224x3 float image (3.2 MB of JSON) to a small image
model (global average pool, dense 10) over REST, beside the same request over gRPC and
beside decoding that JSON in-process (json.loads), 20 requests each, interleaved, medians.

Aims (issue 3): overhead over the in-process call at 1 client <= 0.8 ms p50; at
16 clients >= 2x the minimal server's requests/s with p99 < 25 ms.

    .venv/bin/python -m benchmarks.serving [--quick]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 4, 16)
BATCHING = "max_batch_size { value: 32 } batch_timeout_micros { value: 0 } num_batch_threads { value: 1 } " \
           "max_enqueued_batches { value: 1000 }"


def export_models(base: Path) -> dict[str, tuple[Path, str, list[int]]]:
    """name -> (version dir, input alias, input row shape)."""
    import keras
    import tensorflow as tf

    models = {}
    qnet = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2)])
    decoder = keras.Sequential([
        keras.Input((16,)), keras.layers.Dense(7 * 7 * 32, activation="relu"), keras.layers.Reshape((7, 7, 32)),
        keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    image = keras.Sequential([keras.Input((224, 224, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    for name, model, alias, shape in (("qnet", qnet, "observation", [4]), ("decoder", decoder, "z", [16]),
                                      ("image", image, "image", [224, 224, 3])):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", model.call,
                             input_signature=[tf.TensorSpec([None, *shape], tf.float32, name=alias)])
        archive.write_out(str(base / name / "1"), verbose=False)
        models[name] = (base / name / "1", alias, shape)
    return models


# ------------------------------------------------------------------------------ the minimal server
def minimal_server(port: int, version_dir: str) -> None:
    """A thread-pool gRPC Predict server over the eager signature."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    signature = tf.saved_model.load(version_dir).signatures["serving_default"]

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            response = predict_pb2.PredictResponse()
            for alias, value in signature(**inputs).items():
                response.outputs[alias].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(16), options=[("grpc.max_receive_message_length", 2**31 - 1),
                                                                  ("grpc.max_send_message_length", 2**31 - 1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


# ------------------------------------------------------------------------------------- measuring
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_ready(stub, request, timeout: float = 120) -> None:
    import grpc

    end = time.monotonic() + timeout
    while True:
        try:
            stub.Predict(request, timeout=5)
            return
        except grpc.RpcError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def load(call, clients: int, requests: int) -> tuple[float, float, float]:
    """(p50 us, p99 us, requests/s) of `requests` calls spread over `clients` threads."""
    latencies: list[float] = []
    per_client = requests // clients

    def work():
        mine = []
        for _ in range(per_client):
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
        latencies.extend(mine)
    threads = [threading.Thread(target=work) for _ in range(clients)]
    start_time = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start_time
    latencies.sort()
    return (latencies[len(latencies) // 2] * 1e6, latencies[int(len(latencies) * 0.99)] * 1e6,
            len(latencies) / elapsed)


def large_body(grpc_port: int, rest_port: int, requests: int = 20) -> dict[str, float]:
    """Median seconds of one 224x224x3 image: json.loads of its REST body, REST predict, gRPC predict."""
    import json
    import urllib.request

    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    image = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    body = json.dumps({"instances": image.tolist()}).encode()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "image"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(image))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))

    def rest():
        post = urllib.request.Request(f"http://127.0.0.1:{rest_port}/v1/models/image:predict", data=body)
        with urllib.request.urlopen(post, timeout=120) as reply:
            assert len(json.loads(reply.read())["predictions"][0]) == 10
    cases = {"json.loads of the body": lambda: json.loads(body), "REST predict": rest,
             "gRPC predict": lambda: stub.Predict(request, timeout=120)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(requests):  # interleaved, so load changes hit every case alike
        for name, call in cases.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 600 requests (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3200, help="requests per measurement")
    parser.add_argument("--minimal-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minimal_server:
        return minimal_server(int(args.minimal_server[0]), args.minimal_server[1])
    rounds, requests = (1, 600) if args.quick else (args.rounds, args.requests)

    sys.path.insert(0, str(ROOT))
    from quiet import quiet_tensorflow
    quiet_tensorflow()
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    models = export_models(base)
    config = base / "models.config"
    config.write_text("model_config_list {" + "".join(
        f' config {{ name: "{n}" base_path: "{base / n}" model_platform: "tensorflow" }}' for n in models) + " }")
    (base / "batching.config").write_text(BATCHING)

    servers: dict[str, dict[str, int]] = {"ours": {}, "ours batched": {}, "minimal": {}}
    processes = []
    port, rest_port = free_port(), free_port()
    processes.append(start(["-m", "serving", "serve", f"--port={port}", f"--rest_api_port={rest_port}",
                            f"--model_config_file={config}"]))
    servers["ours"] = {n: port for n in models}
    port = free_port()
    processes.append(start(["-m", "serving", "serve", f"--port={port}", f"--model_config_file={config}",
                            "--enable_batching", f"--batching_parameters_file={base / 'batching.config'}"]))
    servers["ours batched"] = {n: port for n in models}
    for name, (version_dir, _, _) in models.items():
        if name == "image":
            continue
        port = free_port()
        processes.append(start([str(Path(__file__).resolve()), "--minimal-server", str(port), str(version_dir)]))
        servers["minimal"][name] = port

    results: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
    try:
        rng = np.random.default_rng(0)
        calls = {}
        for name, (version_dir, alias, shape) in models.items():
            if name == "image":
                continue
            row = rng.normal(size=(1, *shape)).astype(np.float32)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(row))
            signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
            calls[(name, "in-process")] = (lambda s=signature, a=alias, r=row:
                                           {k: v.numpy() for k, v in s(**{a: tf.constant(r)}).items()})
            for contender, ports in servers.items():
                channel = grpc.insecure_channel(f"127.0.0.1:{ports[name]}")
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                wait_ready(stub, request)
                calls[(name, contender)] = (lambda s=stub, q=request: s.Predict(q, timeout=30))
        for call in calls.values():  # warm-up
            for _ in range(100):
                call()
        for round_ in range(rounds):
            for (name, contender), call in calls.items():
                for clients in CLIENTS:
                    results.setdefault((name, contender, clients), []).append(load(call, clients, requests))
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
        body_times = large_body(servers["ours"]["image"], rest_port, 5 if args.quick else 20)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()

    def median(key, index):
        return statistics.median(r[index] for r in results[key])

    print(f"\nbatch 1, {requests} requests per measurement, median of {rounds} round(s); "
          f"p50 / p99 in microseconds, requests/s")
    print(f"| model | contender | {' | '.join(f'{c} client(s)' for c in CLIENTS)} |")
    print("|---|---|" + "---|" * len(CLIENTS))
    contenders = ["in-process", *servers]
    for name in [n for n in models if n != "image"]:
        for contender in contenders:
            cells = [f"{median((name, contender, c), 0):,.0f} / {median((name, contender, c), 1):,.0f}; "
                     f"{median((name, contender, c), 2):,.0f} rps" for c in CLIENTS]
            print(f"| {name} | {contender} | {' | '.join(cells)} |")
    print()
    for name in [n for n in models if n != "image"]:
        base_p50 = median((name, "in-process", 1), 0)
        for contender in ("ours", "ours batched"):
            overhead = (median((name, contender, 1), 0) - base_p50) / 1000
            ratio = median((name, contender, 16), 2) / median((name, "minimal", 16), 2)
            p99 = median((name, contender, 16), 1) / 1000
            print(f"{name}, {contender}: overhead at 1 client {overhead:.2f} ms p50 (aim <= 0.8); "
                  f"at 16 clients {ratio:.2f}x the minimal server's requests/s (aim >= 2), p99 {p99:.1f} ms (aim < 25)")

    decode = body_times["json.loads of the body"]
    print("\none 224x224x3 float image (3.2 MB of JSON), medians: " + "; ".join(
        f"{name} {seconds * 1000:,.0f} ms" for name, seconds in body_times.items())
        + f"; REST / json.loads {body_times['REST predict'] / decode:.1f}x")


if __name__ == "__main__":
    main()
