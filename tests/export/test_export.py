"""Export round trips: write, load the way the server does, call every signature, compare."""
import json
import shutil
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from export import savedmodel
from export.__main__ import main as export_main
from export.savedmodel import ExportError, export_run, load_run, version_numbers
from export.verify import verify
from tests.helpers import run_main, run_module


@pytest.mark.parametrize("name", ["mlp", "conv", "conditional"])
def test_round_trip_matches_the_model_in_memory(exports, reference_verdicts, name):
    models, runs, versions = exports
    version_dir = versions[name]
    assert version_dir == models / name / "1"
    for part in ("saved_model.pb", "variables/variables.index", "assets.extra/model_card.json",
                 "assets.extra/tf_serving_warmup_requests"):
        assert (version_dir / part).exists(), part

    checked_dir, results = verify(models / name)
    assert checked_dir == version_dir
    assert {r.name for r in results} == {"serving_default", "sample", "decode", "encode", "reconstruct", "elbo",
                                         "log_prob"}
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    reference_ok, output = reference_verdicts.get(version_dir, (True, "no reference checker"))
    assert reference_ok, output

    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["family"] == "vae" and card["train_steps"] > 0 and "test_iw_nll" in card["metrics"]
    conditional = name == "conditional"
    assert ("label" in card["signatures"]["sample"]["inputs"]) == conditional

    model, _ = load_run(runs[name])
    loaded = tf.saved_model.load(str(version_dir))
    images = tf.constant(np.load(runs[name] / "examples.npz")["images"][:3])
    extra = {"label": tf.constant([3, 1, 4], tf.int64)} if conditional else {}
    labels = extra.get("label")
    seeds = tf.constant([1, 2, 1], tf.int64)
    z = tf.random.stateless_normal([3, model.config.latent_dim], [0, 1])
    expected = {
        "sample": {"images": model.sample(seeds, labels)},
        "decode": {"images": model.decode(z, labels)},
        "encode": dict(zip(["mean", "stddev"], model.encode(images, labels))),
        "reconstruct": {"images": model.decode(model.encode(images, labels)[0], labels)},
        "elbo": model.elbo_parts(images, labels),
    }
    inputs = {"sample": {"seed": seeds}, "decode": {"z": z}, "encode": {"images": images},
              "reconstruct": {"images": images}, "elbo": {"images": images}}
    for signature, outputs in expected.items():
        got = loaded.signatures[signature](**inputs[signature], **extra)
        for alias, value in outputs.items():
            np.testing.assert_allclose(got[alias].numpy(), value.numpy(), rtol=1e-4, atol=1e-4,
                                       err_msg=f"{signature}/{alias}")


def test_models_config_lists_every_model_and_new_exports_take_the_next_version(exports, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    def entries(models):
        config = text_format.Parse((models / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
        return {c.name: c for c in config.model_config_list.config}

    shared, runs, _ = exports
    listed = entries(shared)
    assert set(listed) == {"mlp", "conv", "conditional"}
    for name, entry in listed.items():
        assert entry.base_path == str((shared / name).resolve()) and entry.model_platform == "tensorflow"
    models = shutil.copytree(shared, tmp_path / "models")  # the other tests read the shared exports as made
    assert export_run(runs["mlp"], models, "mlp") == models / "mlp" / "2"
    listed = entries(models)
    assert set(listed) == {"mlp", "conv", "conditional"}
    assert listed["mlp"].base_path == str((models / "mlp").resolve())
    assert not [p for p in (models / "mlp").iterdir() if p.name.startswith(".")]


def test_another_program_with_only_tensorflow_reproduces_seeded_samples(smoke_run, smoke_export, tmp_path):
    model, _ = load_run(smoke_run[0])
    np.save(tmp_path / "in_memory.npy", model.sample(tf.constant([1, 2, 1], tf.int64)).numpy())
    program = tmp_path / "consumer.py"
    program.write_text(textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(smoke_export)!r})
        images = loaded.signatures["sample"](seed=tf.constant([1, 2, 1], tf.int64))["images"].numpy()
        assert not any(name.split(".")[0] in ("zoo", "training", "export", "serving") for name in sys.modules)
        assert images.shape == (3, 28, 28, 1), images.shape
        assert np.array_equal(images[0], images[2]), "same seed, same image"
        assert np.abs(images[0] - images[1]).max() > 1e-3, "another seed, another image"
        np.testing.assert_allclose(images, np.load({str(tmp_path / 'in_memory.npy')!r}), atol=1e-5)
        print("ok")
    """))
    result = run_module(str(program), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize("images, message", [
    (tf.zeros([2, 27, 27, 1]), "Shape of tensor images [2,27,27,1] is not compatible with expected shape [?,28,28,1]"),
    (tf.zeros([2, 28, 28, 1], tf.float64), "was expected to be a float tensor but is a double tensor"),
    (tf.fill([2, 28, 28, 1], 255.0), "images must be in [0, 1]"),
])
def test_bad_signature_input_is_named(smoke_export, images, message):
    encode = tf.saved_model.load(str(smoke_export)).signatures["encode"]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        encode(images=images)
    assert message in str(error.value)


def test_export_of_a_run_without_checkpoint_fails_cleanly(smoke_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    argv = [str(run_dir), "--model_base_path", str(tmp_path / "models"), "--name", "vae"]
    status, _, err = run_main(export_main, argv, capsys)
    assert status == 1
    err = err.strip()
    assert err.endswith("has no checkpoint to export; train it first (the run directory must hold checkpoints/)")
    assert "\n" not in err
    assert not list((tmp_path / "models").rglob("saved_model.pb"))


def test_export_of_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(ExportError, match="is not a training run directory"):
        export_run(tmp_path, tmp_path / "models", "vae")


def test_a_failed_export_leaves_no_version_behind(smoke_run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(savedmodel, "write_warmup", broken)
    with pytest.raises(OSError, match="disk full"):
        export_run(smoke_run[0], tmp_path, "vae")
    assert version_numbers(tmp_path / "vae") == []
    assert list((tmp_path / "vae").iterdir()) == []  # no staging directory either


def test_a_pixelrnn_export_loads_as_the_server_loads_it(pixelrnn_export, reference_verdicts, capsys):
    """Both PixelRNN layers share the signatures; the smoke run's Diagonal BiLSTM (its skew, scans and
    the fast sampler's loops) loads through our session-based verifier and the reference checker (when set)."""
    status, out, _ = run_main(export_main, ["verify", str(pixelrnn_export)], capsys)
    assert status == 0, out
    assert out.strip().endswith("OK, loads through the session-based loader and all 4 signatures run")
    reference_ok, output = reference_verdicts.get(pixelrnn_export, (True, "no reference checker"))
    assert reference_ok, output
    card = json.loads((pixelrnn_export / "assets.extra" / "model_card.json").read_text())
    assert card["family"] == "pixelrnn" and card["model_config"]["layer"] == "diagonal"
    assert set(card["signatures"]) == {"serving_default", "sample", "log_prob", "complete"}
    assert set(card["signatures"]["complete"]["inputs"]) == {"images", "known_rows", "seed"}
    assert card["metrics"]["test_nll"] > 0


def test_verify_and_reference_checker_both_reject_what_the_server_cannot_load(broken_export, reference_verdicts,
                                                                             capsys):
    assert tf.saved_model.load(str(broken_export)).signatures["serving_default"](x=tf.zeros([1, 4]))  # eager loads
    reference_ok, _ = reference_verdicts.get(broken_export, (False, "no reference checker"))
    try:
        _, results = verify(broken_export)
        ours_ok = all(r.ok for r in results)
    except ExportError:
        ours_ok = False
    assert ours_ok is reference_ok is False
    status, out, err = run_main(export_main, ["verify", str(broken_export.parent)], capsys)
    assert status == 1 and "FAILED" in err + out


def test_verify_fails_when_outputs_break_the_model_card(smoke_export, tmp_path, capsys):
    version_dir = tmp_path / "vae" / "1"
    shutil.copytree(smoke_export, version_dir)
    card_path = version_dir / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["signatures"]["decode"]["outputs"]["images"]["max"] = 0.01  # means are far brighter
    card_path.write_text(json.dumps(card))
    _, results = verify(version_dir)
    failed = {r.name: r.detail for r in results if not r.ok}
    assert list(failed) == ["decode"] and "expected <= 0.01" in failed["decode"]
    status, out, _ = run_main(export_main, ["verify", str(version_dir)], capsys)
    assert status == 1 and "decode: FAILED" in out


@pytest.mark.parametrize("fixture", ["smoke_run", "pixelcnn_run", "pixelrnn_run", "dqn_run"])
def test_load_run_restores_every_variable(fixture, request):
    """Two rebuilds from the checkpoint are identical (fresh initialisations would differ)."""
    run_dir = request.getfixturevalue(fixture)[0]
    first, _ = load_run(run_dir)
    second, _ = load_run(run_dir)
    assert first.variables
    for a, b in zip(first.variables, second.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_checkpoint_without_the_models_variables_is_refused(smoke_run, tmp_path):
    """A checkpoint that lacks the model's variables (another model's, or one written before
    they were listed beside the model) is refused instead of exporting fresh weights."""
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run[0], run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    tf.train.Checkpoint(step=tf.Variable(1)).write(str(run_dir / "checkpoints" / "1" / "variables"))
    with pytest.raises(ExportError, match="does not hold this model's variables"):
        load_run(run_dir)


@pytest.mark.parametrize("fixture, kind", [("smoke_export", "image_model"), ("pixelcnn_export", "image_model"),
                                           ("pixelrnn_export", "image_model"), ("dqn_export", "policy"),
                                           ("pg_export", "policy")])
def test_each_family_exports_as_its_run_declares(fixture, kind, request):
    """Image models go through keras.export.ExportArchive; policies get tf-agents' layout too."""
    from export.policy import POLICY_SPECS

    version_dir = request.getfixturevalue(fixture)
    version_dir = version_dir[1] if isinstance(version_dir, tuple) else version_dir
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["kind"] == kind
    assert (version_dir / POLICY_SPECS).exists() == (kind == "policy")
    assert ("action" in signature_names(version_dir)) == (kind == "policy")  # tf-agents' signature


def signature_names(version_dir) -> set[str]:
    """The signatures in saved_model.pb, read without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    return {name for name in saved.meta_graphs[0].signature_def if not name.startswith("__")}


def test_export_follows_the_declared_kind_not_the_model(dqn_run, tmp_path):
    """A DQN run declared as an image model is written as one: the declaration decides."""
    from export.policy import POLICY_SPECS

    run_dir = tmp_path / "run"
    shutil.copytree(dqn_run[0], run_dir)
    declared = json.loads((run_dir / "model.json").read_text())
    (run_dir / "model.json").write_text(json.dumps({**declared, "kind": "image_model"}))
    version_dir = export_run(run_dir, tmp_path / "models", "q")
    assert not (version_dir / POLICY_SPECS).exists()
    assert signature_names(version_dir) == {"serving_default", "q_values"}


def test_a_run_without_a_model_is_not_exported(nas_run, tmp_path):
    with pytest.raises(ExportError, match=r"holds a run of kind architecture_search \(nas\), which has no model "
                                          r"to serve; export a run of kind image_model or policy$"):
        export_run(nas_run[0], tmp_path / "models", "nas")


def test_a_damaged_checkpoint_is_named_and_the_one_before_it_exported(dqn_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(dqn_run[0], run_dir)
    data = run_dir / "checkpoints" / "4000" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    _, info = load_run(run_dir)
    assert info["checkpoint"] == run_dir / "checkpoints" / "2000" / "variables"
    assert f"{data} is damaged (" in capsys.readouterr().err
