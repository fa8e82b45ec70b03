"""Versions coming and going under a running server: no failed request, no broken swap."""
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving.client import Client
from serving.errors import ServingError
from serving.tensors import to_proto
from tests.serving.conftest import export_policy, write_config

OBS = np.array([[0.0, 0.0, 0.1, 0.2]], np.float32)


def predict(stub, name="cartpole"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["observation"].CopyFrom(to_proto(OBS))
    reply = stub.Predict(request, timeout=30)
    return reply.model_spec.version.value, tf.make_ndarray(reply.outputs["q_values"])


def wait_until(condition, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def states(client, name="cartpole"):
    return {s["version"]: (s["state"], s["error_code"]) for s in client.status(name)}


def test_new_version_under_load_then_broken_then_deleted(start_server, tmp_path):
    base = tmp_path / "cartpole"
    base.mkdir()
    export_policy(base, 1)
    server = start_server(f"--model_base_path={base}", "--model_name=cartpole", "--file_system_poll_wait_seconds=1",
                          "--max_num_load_retries=0", wait_for=("cartpole",), rest=False)
    client = Client(server.target)

    served, failures, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                served.append(predict(server.stub))
            except grpc.RpcError as error:
                failures.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(served) > 50, what="requests on version 1")
        export_policy(base, 2, shift=10.0)  # written aside and renamed into place
        wait_until(lambda: any(v == 2 for v, _ in served[-20:]), what="version 2 answering")
        count = len(served)
        wait_until(lambda: len(served) > count + 200, what="more requests on version 2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    versions = [v for v, _ in served]
    assert versions[-100:] == [2] * 100
    assert 1 in versions
    one = next(q for v, q in served if v == 1)
    two = next(q for v, q in served if v == 2)
    np.testing.assert_allclose(two, one + 10.0, atol=1e-5)
    wait_until(lambda: states(client) == {2: ("AVAILABLE", "OK"), 1: ("END", "OK")}, what="version 1 unloaded")

    # a broken version 3 is tried, fails, shows its error, and never takes traffic
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    broken.rename(base / "3")
    wait_until(lambda: states(client).get(3, ("",))[0] == "END", what="version 3 to fail")
    status = client.status("cartpole", 3)[0]
    assert status["error_code"] != "OK" and status["error_message"]
    assert states(client)[2] == ("AVAILABLE", "OK")
    assert predict(server.stub)[0] == 2

    # deleting versions 3 and 2 brings version 1 back, and 2 is unloaded
    shutil.rmtree(base / "3")
    shutil.rmtree(base / "2")
    wait_until(lambda: predict(server.stub)[0] == 1, what="version 1 back")
    wait_until(lambda: states(client)[2] == ("END", "OK"), what="version 2 unloaded")
    client.close()


def test_reload_config_policies_and_labels(start_server, tmp_path, smoke_export):
    base = tmp_path / "cartpole"
    base.mkdir()
    export_policy(base, 1)
    export_policy(base, 2, shift=1.0)
    config = write_config(tmp_path / "models.config", {"cartpole": base})
    server = start_server(f"--model_config_file={config}", "--file_system_poll_wait_seconds=1",
                          "--model_config_file_poll_wait_seconds=1", wait_for=("cartpole",), rest=False)
    client = Client(server.target)
    assert states(client) == {2: ("AVAILABLE", "OK")}  # default policy: the latest version only

    all_versions = (f'config {{ name: "cartpole" base_path: "{base}" model_platform: "tensorflow" '
                    f'model_version_policy {{ all {{}} }} %s }} '
                    f'config {{ name: "vae" base_path: "{smoke_export.parent}" model_platform: "tensorflow" }}')
    with pytest.raises(ServingError) as caught:  # as in TF Serving: labels are checked before anything loads
        client.reload(all_versions % 'version_labels { key: "stable" value: 1 }')
    assert caught.value.message == ("Request to assign label to version 1 of model cartpole, which is not "
                                    "currently available for inference")
    client.reload(all_versions % "")
    assert states(client) == {2: ("AVAILABLE", "OK"), 1: ("AVAILABLE", "OK")}
    client.reload(all_versions % 'version_labels { key: "stable" value: 1 }')  # once version 1 is up
    assert client.predict("cartpole", {"observation": OBS}, label="stable", output_filter=["action"])
    assert client.predict("cartpole", {"observation": OBS}, version=1)["q_values"][0, 1] == pytest.approx(0.3)
    assert client.sample_images("vae", [0, 1]).shape == (2, 28, 28, 1)

    with pytest.raises(ServingError) as caught:  # a label may only name a loaded version
        client.reload(f'config {{ name: "cartpole" base_path: "{base}" model_platform: "tensorflow" '
                      f'version_labels {{ key: "stable" value: 7 }} }}')
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.message == ("Request to assign label to version 7 of model cartpole, which is not "
                                    "currently available for inference")

    client.reload(f'config {{ name: "cartpole" base_path: "{base}" model_platform: "tensorflow" '
                  f'model_version_policy {{ specific {{ versions: 1 }} }} }}')
    wait_until(lambda: states(client) == {2: ("END", "OK"), 1: ("AVAILABLE", "OK")}, what="specific policy")
    with pytest.raises(ServingError) as caught:  # vae left the list, so it is gone
        client.sample_images("vae", [0])
    assert caught.value.code == grpc.StatusCode.NOT_FOUND

    with pytest.raises(ServingError) as caught:
        client.reload('config { name: "relative" base_path: "models/x" model_platform: "tensorflow" }')
    assert caught.value.message == ("Expected model relative to have an absolute path or URI; "
                                    "got base_path()=models/x")

    # --model_config_file_poll_wait_seconds: an edited file replaces the model list
    write_config(config, {"vae": smoke_export.parent})
    wait_until(lambda: any(s["state"] == "AVAILABLE" for s in _status_or_empty(client, "vae")), what="vae from file")
    wait_until(lambda: not _status_or_empty(client, "cartpole"), what="cartpole gone")
    client.close()


def _status_or_empty(client, name):
    try:
        return client.status(name)
    except ServingError:
        return []


def test_failed_loads_hold_up_nothing_and_sigterm_ends_promptly(start_server, tmp_path):
    """A corrupt version, then a good one: the good one is served at the next poll, not after
    the corrupt one's retries (5 of them, 60 s apart: the real server's defaults). A reload
    pointing at /proc answers, and SIGTERM then ends the server."""
    base = tmp_path / "cartpole"
    base.mkdir()
    export_policy(base, 1)
    server = start_server(f"--model_base_path={base}", "--model_name=cartpole", "--file_system_poll_wait_seconds=1",
                          wait_for=("cartpole",), rest=False)
    client = Client(server.target)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    broken.rename(base / "2")
    wait_until(lambda: states(client).get(2, ("", "OK"))[1] != "OK", what="version 2 to fail once")
    export_policy(base, 3, shift=3.0)
    # 30 s: half the retry interval the old manager slept (holding its lock) before anything else
    wait_until(lambda: predict(server.stub)[0] == 3, timeout=30, what="version 3 served")
    wait_until(lambda: states(client)[2][0] == "END", what="version 2 no longer retried")

    started = time.monotonic()
    with pytest.raises(ServingError) as caught:
        client.reload('config { name: "proc" base_path: "/proc" model_platform: "tensorflow" }')
    assert caught.value.message.startswith("1 model(s) did not become available: {proc}")
    assert time.monotonic() - started < 30  # one failed attempt; retries wait for the poller
    client.close()
    server.process.terminate()
    assert server.process.wait(30) == 0
