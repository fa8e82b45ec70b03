"""Which model versions are loaded, and the switch from one to the next without a gap.

Like the real server: every model of the `ModelConfigList` is watched under its base path;
its version policy (`latest`, `all`, `specific`) names the aspired versions; a new version
is loaded and warmed up before it takes traffic, and the versions it replaces are unloaded
only afterwards (AvailabilityPreservingPolicy), each after its running requests finish. A
version that fails to load stays END with its error and never displaces a working one.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import ServingError, describe, invalid
from serving.servable import Servable

log = logging.getLogger("serving")
State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class Version:
    """What GetModelStatus reports for one version, and the servable once it is AVAILABLE."""
    number: int
    state: int = State.START
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""
    servable: Servable | None = None
    directory: str = ""          # the version's directory under the base path, as found (`00000123`)
    attempts: int = 0            # failed load attempts so far
    retry_at: float = 0.0        # monotonic time of the next attempt, while LOADING after a failure
    fingerprint: tuple = ()      # the directory as it was at the last failure (a copy still arriving?)


def fingerprint(path: Path) -> tuple:
    """Names, sizes and times of a version directory's files (top level and variables/, at most
    1000): when it changes after a failed load, the copy was still arriving, so load again now."""
    entries = []
    for folder in (path, path / "variables"):
        try:
            with os.scandir(folder) as listing:
                for entry in itertools.islice(listing, 1000):
                    info = entry.stat(follow_symlinks=False)
                    entries.append((folder.name, entry.name, info.st_size, info.st_mtime_ns))
        except OSError:
            continue
    return tuple(sorted(entries))


@dataclasses.dataclass
class Model:
    config: model_server_config_pb2.ModelConfig
    versions: dict[int, Version] = dataclasses.field(default_factory=dict)
    labels: dict[str, int] = dataclasses.field(default_factory=dict)


def version_dirs(name: str, base_path: str) -> dict[int, str]:
    """Versions on disk, {number: directory name}: children named by an integer, as SimpleAtoi
    reads them (`00000123` is version 123, served from `00000123/`). When two directories name
    one version (`123/` and `00000123/`), the last in name order is loaded and the other
    ignored, with the real server's warning (it keeps the last its file system lists; object
    stores list in name order)."""
    base = Path(base_path)
    if not base.is_dir():
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find base path {base_path} for servable {name}")
    found: dict[int, str] = {}
    for child in sorted(base.iterdir(), key=lambda c: c.name):
        if child.is_dir() and re.fullmatch(r"\+?\d{1,18}", child.name):
            number = int(child.name)
            if number in found:
                log.warning("Duplicate version directories detected. Version %d will be loaded from %s, %s will be "
                            "ignored.", number, child.name, found[number])
            found[number] = child.name
    return found


def aspired(config: model_server_config_pb2.ModelConfig, on_disk: list[int]) -> list[int]:
    """The versions the model's version policy wants loaded (default: the latest one)."""
    policy = config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return on_disk
    if kind == "specific":
        return [v for v in on_disk if v in set(policy.specific.versions)]
    keep = max(1, policy.latest.num_versions) if kind == "latest" else 1
    return on_disk[-keep:]


def check_config_list(configs: model_server_config_pb2.ModelConfigList, roots: tuple[str, ...] = ()) -> None:
    """The real server's validation of a model list: names unique, paths absolute, platform tensorflow;
    and ours: with `roots` (--allowed_model_roots), every base path must lie under one of them."""
    seen = set()
    for config in configs.config:
        if not config.name:
            raise invalid("Every model in the config list needs a name")
        if config.name in seen:
            raise invalid(f"Illegal to list model {config.name} multiple times in config list")
        seen.add(config.name)
        if not (config.base_path.startswith("/") or "://" in config.base_path):
            raise invalid(f"Expected model {config.name} to have an absolute path or URI; "
                          f"got base_path()={config.base_path}")
        if config.model_platform not in ("", "tensorflow"):
            raise invalid(f"Model {config.name} has model_platform {config.model_platform!r}; "
                          "this server serves only \"tensorflow\"")
        if roots and not any(_within(config.base_path, root) for root in roots):
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               f"Model {config.name} has base_path {config.base_path}, outside the allowed model "
                               f"roots {', '.join(roots)} (--allowed_model_roots); a SavedModel is code, so this "
                               "server loads models only from there")


def _within(path: str, root: str) -> bool:
    """Whether `path` is `root` or below it, once both are resolved (no `..` or symlink escapes)."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


class ModelManager:
    """Loads, serves and unloads versions; `acquire` is the request path's only entry."""

    def __init__(self, configs: model_server_config_pb2.ModelConfigList, *,
                 warmup: Callable[[Servable], None] | None = None,
                 max_load_retries: int = 5, load_retry_seconds: float = 60.0,
                 allow_labels_for_unavailable: bool = False, on_load_attempt=None,
                 session_options: dict | None = None, allowed_roots: tuple[str, ...] = (),
                 load_threads: int = 0, unload_threads: int = 0):
        self.load_threads = load_threads
        # --num_unload_threads: unloads (each waits for its version's running requests) off the manager's lock
        self._unloads = ThreadPoolExecutor(unload_threads, thread_name_prefix="unload") if unload_threads > 0 else None
        self.allowed_roots = tuple(allowed_roots)
        check_config_list(configs, self.allowed_roots)
        self.models: dict[str, Model] = {c.name: Model(c) for c in configs.config}
        self.warmup = warmup
        self.max_load_retries = max_load_retries
        self.load_retry_seconds = load_retry_seconds
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.on_load_attempt = on_load_attempt or (lambda path, ok: None)
        self.session_options = session_options or {}
        self._lock = threading.Lock()       # guards routing (models, versions, labels) for requests
        self._manage = threading.RLock()    # one reconciliation at a time (poller, reload)
        self._stop = threading.Event()

    # ---------------------------------------------------------------- request path
    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a ModelSpec names, held until `release`; NOT_FOUND as the real server words it."""
        if not name:
            raise invalid("ModelSpec has no name specified.")
        with self._lock:
            model = self.models.get(name)
            if label is not None:
                if model is None or label not in model.labels:
                    raise invalid(f"Unrecognized servable version label: {label}")
                version = model.labels[label]
            if version is not None:
                entry = model.versions.get(version) if model else None
                if entry is None or entry.servable is None or entry.state != State.AVAILABLE:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: Specific({name}, {version})")
                servable = entry.servable
            else:
                ready = [v for v in (model.versions.values() if model else ())
                         if v.state == State.AVAILABLE and v.servable is not None]
                if not ready:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
                servable = max(ready, key=lambda v: v.number).servable
            servable.acquire()
            return servable

    def status(self, name: str, version: int | None = None) -> list[Version]:
        """GetModelStatus: the versions seen, highest first, or one of them."""
        with self._lock:
            model = self.models.get(name)
            versions = sorted(model.versions.values(), key=lambda v: -v.number) if model else []
            if version is not None:
                versions = [v for v in versions if v.number == version]
                if not versions:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
            return [dataclasses.replace(v) for v in versions]

    # ---------------------------------------------------------------- lifecycle
    def start(self, poll_seconds: float) -> None:
        """Load every model's aspired versions (fail like the real server if one cannot), then poll."""
        with self._manage:
            labels = self._checked_labels([m.config for m in self.models.values()])
            self.reconcile(startup=True)
            self._set_labels(labels)
        if poll_seconds > 0:
            threading.Thread(target=self._poll, args=(poll_seconds,), daemon=True, name="version-poller").start()

    def stop(self, timeout: float = 5.0) -> None:
        """Unload everything, giving running requests `timeout` seconds (then their runs are
        cancelled); a load under way for longer than that is left (the process is ending)."""
        self._stop.set()
        if not self._manage.acquire(timeout=timeout):
            log.warning("a model load is still under way; exiting without unloading")
            return
        try:
            for model in self.models.values():
                for entry in model.versions.values():
                    self._unload(model, entry, timeout)
        finally:
            self._manage.release()

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                with self._manage:
                    self.reconcile()
            except Exception:  # a poll must never kill the poller
                log.exception("polling the model base paths failed")

    def reconcile(self, startup: bool = False, models: list[str] | None = None) -> None:
        """One pass over the base paths: load what is aspired and new (--num_load_threads at once),
        then unload what is not."""
        plans = []  # (model, versions wanted, loads to make)
        for name in models or list(self.models):
            model = self.models.get(name)
            if model is None:
                continue
            try:
                directories = version_dirs(name, model.config.base_path)
            except ServingError as error:
                if startup:
                    raise
                log.warning("%s", error.message)
                directories = {}
            on_disk = sorted(directories)
            if not on_disk:
                log.warning("No versions of servable %s found under base path %s. Did you forget to name your "
                            "leaf directory as a number (eg. '/1/')?", name, model.config.base_path)
            wanted = aspired(model.config, on_disk)
            loads = []
            for number in sorted(wanted, reverse=True):
                entry = model.versions.get(number)
                if entry is None or (entry.state == State.END and entry.error_code == grpc.StatusCode.OK):
                    loads.append((model, number, directories[number], startup, None))
                elif entry.state == State.LOADING and entry.attempts and self._retry_due(model, entry):
                    loads.append((model, number, entry.directory, startup, entry))
            plans.append((model, wanted, loads))
        jobs = [load for _, _, loads in plans for load in loads]
        if self.load_threads > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(self.load_threads, thread_name_prefix="load") as pool:
                list(pool.map(lambda job: self._load(*job), jobs))
        else:
            for job in jobs:
                self._load(*job)
        for model, wanted, _ in plans:
            for entry in model.versions.values():  # a failed version no longer aspired: stop retrying it
                if entry.number not in wanted and entry.state == State.LOADING and entry.attempts:
                    with self._lock:
                        entry.state = State.END
            if startup:
                failed = [v for v in model.versions.values() if v.state == State.END and v.error_code != grpc.StatusCode.OK]
                if failed and not any(v.state == State.AVAILABLE for v in model.versions.values()):
                    raise ServingError(failed[0].error_code, f"Loading servable: {{name: {model.config.name} version: "
                                       f"{failed[0].number}}} failed: {failed[0].error_message}")
            serving_wanted = any(model.versions[v].state == State.AVAILABLE for v in wanted if v in model.versions)
            for entry in sorted(model.versions.values(), key=lambda v: v.number):
                if entry.number not in wanted and entry.state == State.AVAILABLE and (serving_wanted or not wanted):
                    self._unload(model, entry)

    def _retry_due(self, model: Model, entry: Version) -> bool:
        """A failed version is tried again when its retry interval has passed, or at once when its
        directory changed since it failed (a slow copy completing)."""
        return (time.monotonic() >= entry.retry_at
                or fingerprint(Path(model.config.base_path) / entry.directory) != entry.fingerprint)

    def _load(self, model: Model, number: int, directory: str, startup: bool = False,
              entry: Version | None = None) -> None:
        """Load attempts of one version. A failure never sleeps here (the caller holds the manager's
        lock): the version stays LOADING and the next poll retries it when due; at startup the
        retries are waited for, as the real server's start-up does."""
        name, path = model.config.name, Path(model.config.base_path) / directory
        if entry is None:
            entry = Version(number, State.LOADING, directory=directory)
            with self._lock:
                model.versions[number] = entry
            log.info("Loading servable: {name: %s version: %d}", name, number)
        while True:
            try:
                servable = Servable(name, number, path, **self.session_options)
                self.on_load_attempt(str(path), True)
                if self.warmup:
                    self.warmup(servable)
                break
            except Exception as error:  # any failure leaves the version END with the error shown
                self.on_load_attempt(str(path), False)
                code, message = describe(error)
                entry.attempts += 1
                log.error("Loading servable %s version %d failed (attempt %d): %s", name, number, entry.attempts,
                          message)
                with self._lock:
                    entry.error_code, entry.error_message = code, message
                    if entry.attempts > self.max_load_retries or self._stop.is_set():
                        entry.state = State.END
                        return
                entry.retry_at = time.monotonic() + max(0.0, self.load_retry_seconds)
                entry.fingerprint = fingerprint(path)
                if not startup or self._stop.wait(max(0.0, self.load_retry_seconds)):
                    return
        with self._lock:
            entry.servable, entry.state = servable, State.AVAILABLE
            entry.error_code, entry.error_message = grpc.StatusCode.OK, ""
        log.info("Successfully loaded servable version {name: %s version: %d}", name, number)

    def _unload(self, model: Model, entry: Version, timeout: float = 60.0) -> None:
        if entry.servable is None:
            return
        with self._lock:
            entry.state = State.UNLOADING
            servable, entry.servable = entry.servable, None

        def unload() -> None:
            servable.unload(timeout)
            with self._lock:
                entry.state = State.END
            log.info("Unloaded servable version {name: %s version: %d}", model.config.name, entry.number)
        if self._unloads is not None and not self._stop.is_set():
            self._unloads.submit(unload)
        else:
            unload()

    def _checked_labels(self, configs) -> dict[str, dict[str, int]]:
        """The configs' version labels, checked as UpdateModelVersionLabelMap checks them: before any
        model of the config loads, a label may only name a version that is AVAILABLE already (so an
        initial config with labels fails), unless --allow_version_labels_for_unavailable_models,
        which allows it except for moving an existing label to another version."""
        for config in configs:
            model = self.models.get(config.name)
            for label, number in config.version_labels.items():
                entry = model.versions.get(number) if model else None
                moved = model is not None and model.labels.get(label, number) != number
                if (self.allow_labels_for_unavailable and not moved) or (
                        entry is not None and entry.state == State.AVAILABLE):
                    continue
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"Request to assign label to version {number} of model {config.name}, "
                                   "which is not currently available for inference")
        return {config.name: dict(config.version_labels) for config in configs}

    def _set_labels(self, labels: dict[str, dict[str, int]]) -> None:
        with self._lock:
            for name, model_labels in labels.items():
                if name in self.models:
                    self.models[name].labels = model_labels

    def reload(self, configs: model_server_config_pb2.ModelConfigList) -> None:
        """HandleReloadConfigRequest: the new list replaces the old; blocks until new models are up."""
        check_config_list(configs, self.allowed_roots)
        with self._manage:
            labels = self._checked_labels(configs.config)
            new = {c.name: c for c in configs.config}
            for name in [n for n in self.models if n not in new]:
                model = self.models[name]
                for entry in list(model.versions.values()):
                    self._unload(model, entry)
                with self._lock:
                    del self.models[name]
            added = []
            for name, config in new.items():
                if name in self.models:
                    self.models[name].config = config
                else:
                    with self._lock:
                        self.models[name] = Model(config)
                    added.append(name)
            self.reconcile(models=list(new))
            missing = {n: self.models[n] for n in added
                       if not any(v.state == State.AVAILABLE for v in self.models[n].versions.values())}
            if missing:
                raise ServingError(grpc.StatusCode.UNKNOWN, f"{len(missing)} model(s) did not become available: "
                                   f"{{{', '.join(sorted(missing))}}}")
            self._set_labels(labels)


def model_config_list(name: str, base_path: str) -> model_server_config_pb2.ModelConfigList:
    """The one-model list that `--model_name` and `--model_base_path` stand for."""
    configs = model_server_config_pb2.ModelConfigList()
    configs.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    return configs

