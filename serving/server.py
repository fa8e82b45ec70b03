"""`python -m serving serve`: tensorflow_model_server's command line, on one asyncio loop.

The models load before the ports open, as in the real server; then gRPC (grpc.aio) and,
when `--rest_api_port` is set, REST (aiohttp) share one event loop, and session runs go
to a thread pool (TensorFlow releases the GIL while it computes).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time

from serving.protos import (BatchingParameters, ConfigError, ModelServerConfig, MonitoringConfig, SSLConfig,
                            read_text_proto)

log = logging.getLogger("serving")


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# tensorflow_model_server flags that cannot mean anything here: accepted at their default
# value (so a real command line that spells out a default still starts), refused otherwise.
REFUSED = {
    "use_alts_credentials": (False, "ALTS credentials exist only on Google Cloud; use --ssl_config_file"),
    "platform_config_file": ("", "this server serves only the TensorFlow platform (SavedModels), which needs no "
                                 "platform config"),
    "prefer_tflite_model": (False, "this server has no TensorFlow Lite runtime; it serves the SavedModel"),
    "thread_pool_factory_config_file": ("", "thread-pool factories are C++ plugins of the real server"),
    "mixed_precision": ("", "mixed precision is a TPU/GPU rewrite of the real server's session; here sessions "
                            "run as exported"),
    "enable_per_model_batching_parameters": (False, "batching here takes one --batching_parameters_file for every "
                                                    "model"),
}


def flag_parser() -> argparse.ArgumentParser:
    """Every flag of tensorflow_model_server (main.cc, 48), plus a few of ours (marked)."""
    parser = argparse.ArgumentParser(
        prog="python -m serving serve", allow_abbrev=False,
        description="A model server with TensorFlow Serving's gRPC and REST APIs and command line.")
    add = parser.add_argument
    flag = lambda name, default, help: add(name, type=_bool, nargs="?", const=True, default=default,  # noqa: E731
                                           metavar="true|false", help=help)
    add("--host", default="127.0.0.1", help="address to bind (the real server binds 0.0.0.0); not a TF Serving flag")
    flag("--playground", False, "also serve the playground page at /playground/ on the REST port; not a TF Serving flag")
    add("--port", type=int, default=8500, help="gRPC port")
    add("--grpc_socket_path", default="", help="also listen for gRPC on this UNIX socket")
    add("--rest_api_port", type=int, default=0, help="REST port; 0 turns REST off")
    add("--rest_api_num_threads", type=int, default=0, help="accepted for compatibility; REST runs on the event loop")
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="timeout of REST calls")
    flag("--rest_api_enable_cors_support", False, "add CORS headers to REST replies")
    add("--model_name", default="default", help="name of the model (with --model_base_path)")
    add("--model_base_path", default="", help="absolute path of the model's version directories")
    add("--model_config_file", default="", help="text ModelServerConfig with a model_config_list")
    add("--model_config_file_poll_wait_seconds", type=int, default=0,
        help="re-read --model_config_file this often; 0 reads it once")
    add("--file_system_poll_wait_seconds", type=int, default=1,
        help="look for new versions this often; 0 looks once, negative never")
    flag("--enable_batching", False, "merge concurrent requests into batches")
    add("--batching_parameters_file", default="", help="text BatchingParameters (needs --enable_batching)")
    add("--monitoring_config_file", default="", help="text MonitoringConfig; Prometheus is served on the REST port")
    flag("--enable_model_warmup", True, "replay assets.extra/tf_serving_warmup_requests before serving a version")
    add("--max_num_load_retries", type=int, default=5, help="retries of a failed version load")
    add("--load_retry_interval_micros", type=int, default=60_000_000, help="wait between load retries")
    flag("--allow_version_labels_for_unavailable_models", False, "let new labels point at versions not yet loaded")
    flag("--enable_serialization_as_tensor_content", False, "write outputs as tensor_content, not typed fields")
    add("--grpc_max_threads", type=int, default=4 * (os.cpu_count() or 1), help="threads that run sessions")
    add("--grpc_channel_arguments", default="",
        help="comma-separated key=value gRPC server arguments (integers where they parse), e.g. "
             "grpc.max_connection_age_ms=60000")
    flag("--enable_grpc_healthcheck_service", False,
         "serve grpc.health.v1.Health, with ModelService and PredictionService SERVING")
    flag("--enable_profiler", True, "serve TensorFlow's profiler service (tensorflow.ProfilerService) on the gRPC port")
    add("--ssl_config_file", default="", help="text SSLConfig (server_key, server_cert, custom_ca, client_verify): "
                                             "gRPC over TLS")
    add("--tensorflow_session_parallelism", type=int, default=0,
        help="threads of a session (intra- and inter-op) unless those two are given; 0: TF decides")
    add("--tensorflow_intra_op_parallelism", type=int, default=0, help="threads within one op (0: TF decides)")
    add("--tensorflow_inter_op_parallelism", type=int, default=0, help="ops run at once (0: TF decides)")
    add("--tensorflow_session_config_file", default="", help="text ConfigProto for every session")
    add("--per_process_gpu_memory_fraction", type=float, default=0.0,
        help="GPU memory fraction of each session (session config gpu_options)")
    flag("--xla_cpu_compilation_enabled", False, "XLA JIT for the sessions' graphs (off, as in the real server)")
    flag("--xla_gpu_compilation_enabled", False, "XLA JIT on CPU and GPU")
    add("--saved_model_tags", default="serve", help="MetaGraphDef tags to load, comma separated")
    add("--num_load_threads", type=int, default=0,
        help="models loaded at once at start-up and on a config change; 0: one at a time")
    add("--num_unload_threads", type=int, default=0,
        help="versions unloaded at once (an unload waits for its running requests); 0: one at a time")
    add("--num_request_iterations_for_warmup", type=int, default=0, help="replays of each warm-up record (0: once)")
    flag("--enable_signature_method_name_check", False,
         "Predict refuses signatures whose method_name is not predict, classify or regress")
    flag("--flush_filesystem_caches", True,
         "accepted; TensorFlow's file-system caches (GCS) are its own and this server keeps no other")
    flag("--remove_unused_fields_from_bundle_metagraph", True,
         "accepted; this server keeps only the SignatureDefs of a loaded MetaGraphDef either way")
    add("--num_tflite_pools", type=int, default=os.cpu_count() or 1,
        help="accepted; meaningful only with --prefer_tflite_model, which this server refuses")
    add("--num_tflite_interpreters_per_pool", type=int, default=1,
        help="accepted; meaningful only with --prefer_tflite_model, which this server refuses")
    flag("--skip_initialize_tpu", False, "accepted; there is no TPU to initialize here")
    flag("--version", False, "print the server's and TensorFlow's versions and exit")
    for name, (default, why) in REFUSED.items():
        if isinstance(default, bool):
            flag(f"--{name}", default, f"refused unless false: {why}")
        else:
            add(f"--{name}", default=default, help=f"refused unless empty: {why}")
    # ours, not tensorflow_model_server's
    add("--allowed_model_roots", default="",
        help="comma-separated directories: every model base path (flags, config file, reload RPC) must lie "
             "under one of them, others are refused with PERMISSION_DENIED; empty allows any. A SavedModel is "
             "code. Not a TF Serving flag")
    flag("--allow_reload_config_rpc", True,
         "answer ModelService/HandleReloadConfigRequest (it lets any gRPC client load any SavedModel the "
         "server can read); false refuses it with PERMISSION_DENIED. Not a TF Serving flag")
    add("--max_request_rows", type=int, default=10_000,
        help="rows (dimension 0) one request may ask for; more are refused with RESOURCE_EXHAUSTED. "
             "Not a TF Serving flag")
    add("--max_request_bytes", type=int, default=512 * 2**20,
        help="bytes of decoded inputs, and of outputs, one request may take (at most 2147483647, a gRPC "
             "message); more are refused with RESOURCE_EXHAUSTED. Not a TF Serving flag")
    add("--max_inflight_per_model", type=int, default=2,
        help="session runs of one model version at once (each has its own session, so the variables are held "
             "this many times); more requests wait in order. Not a TF Serving flag")
    return parser


def parse_flags(argv: list[str]) -> argparse.Namespace:
    """The flags, checked as the real server checks them; parser.error (exit 2) on a bad combination."""
    parser = flag_parser()
    args = parser.parse_args(argv)
    if args.version:
        return args
    for name, (default, why) in REFUSED.items():
        if getattr(args, name) != default:
            parser.error(f"--{name} is not supported here: {why}")
    if min(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism,
           args.tensorflow_session_parallelism) > 0:
        parser.error("Either configure server_options.tensorflow_session_parallelism or "
                     "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
                     "separately. You cannot configure all.")
    try:
        args.channel_arguments = channel_arguments(args.grpc_channel_arguments)
    except ValueError as error:
        parser.error(str(error))
    if args.model_config_file and args.model_base_path:
        parser.error("--model_config_file and --model_base_path are exclusive: give one model source")
    if not args.model_config_file and not args.model_base_path:
        parser.error("give --model_base_path (with --model_name) or --model_config_file")
    if args.model_base_path and not os.path.isabs(args.model_base_path) and "://" not in args.model_base_path:
        parser.error(f"--model_base_path must be absolute, got {args.model_base_path!r}")
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching_parameters_file needs --enable_batching")
    if args.rest_api_port and args.rest_api_port == args.port:
        parser.error(f"--rest_api_port must differ from --port (both {args.port})")
    if not 1 <= args.max_request_bytes <= 2**31 - 1:
        parser.error(f"--max_request_bytes must be in [1, 2147483647] (a gRPC message), got {args.max_request_bytes}")
    if args.max_request_rows < 1:
        parser.error(f"--max_request_rows must be at least 1, got {args.max_request_rows}")
    for root in filter(None, args.allowed_model_roots.split(",")):
        if not os.path.isabs(root):
            parser.error(f"--allowed_model_roots must list absolute directories, got {root!r}")
    if args.max_inflight_per_model < 1:
        parser.error(f"--max_inflight_per_model must be at least 1, got {args.max_inflight_per_model}")
    for name in ("port", "rest_api_port"):
        if not 0 <= getattr(args, name) < 65536:
            parser.error(f"--{name} must be a port number, got {getattr(args, name)}")
    try:
        args.models = (read_text_proto(args.model_config_file, ModelServerConfig).model_config_list
                       if args.model_config_file else None)
        args.batching = (read_text_proto(args.batching_parameters_file, BatchingParameters)
                         if args.batching_parameters_file else None)
        args.monitoring = (read_text_proto(args.monitoring_config_file, MonitoringConfig)
                           if args.monitoring_config_file else MonitoringConfig())
        args.ssl = read_text_proto(args.ssl_config_file, SSLConfig) if args.ssl_config_file else None
        args.session_config = session_config(args)
    except ConfigError as error:
        parser.error(str(error))
    if args.models is not None and not args.models.config:
        parser.error(f"{args.model_config_file} lists no models: expected a model_config_list with configs")
    if args.monitoring.prometheus_config.enable and not args.rest_api_port:
        parser.error("Prometheus monitoring is served on the REST port: set --rest_api_port")
    if args.playground and not args.rest_api_port:
        parser.error("--playground serves the page on the REST port: set --rest_api_port")
    return args


def channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """--grpc_channel_arguments as server.cc reads it: key=value pairs, a value that parses as an
    integer passed as one."""
    pairs = []
    for item in filter(None, text.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--grpc_channel_arguments expects key=value pairs separated by commas, got {item!r}")
        try:
            pairs.append((key, int(value)))
        except ValueError:
            pairs.append((key, value))
    return pairs


def session_config(args: argparse.Namespace):
    """The ConfigProto of every session: --tensorflow_session_config_file, then the parallelism,
    GPU-memory and XLA flags over it, as server.cc builds it."""
    from tensorflow.core.protobuf import config_pb2

    config = (read_text_proto(args.tensorflow_session_config_file, config_pb2.ConfigProto)
              if args.tensorflow_session_config_file else config_pb2.ConfigProto())
    if args.tensorflow_intra_op_parallelism > 0 or args.tensorflow_inter_op_parallelism > 0:
        config.intra_op_parallelism_threads = args.tensorflow_intra_op_parallelism
        config.inter_op_parallelism_threads = args.tensorflow_inter_op_parallelism
    elif args.tensorflow_session_parallelism > 0 or not args.tensorflow_session_config_file:
        config.intra_op_parallelism_threads = args.tensorflow_session_parallelism
        config.inter_op_parallelism_threads = args.tensorflow_session_parallelism
    if not config.session_inter_op_thread_pool:
        # Each session gets inter-op threads of its own: TensorFlow's shared pool is as big as the
        # machine has cores, and a long step (a while loop) keeps one of its threads busy for as
        # long as it runs, so two long runs would leave no thread for any other model's request.
        config.use_per_session_threads = True
    config.gpu_options.per_process_gpu_memory_fraction = args.per_process_gpu_memory_fraction
    jit = args.xla_cpu_compilation_enabled or args.xla_gpu_compilation_enabled
    config.graph_options.optimizer_options.global_jit_level = (
        config_pb2.OptimizerOptions.ON_1 if jit else config_pb2.OptimizerOptions.OFF)
    return config


def version_text() -> str:
    import tensorflow as tf

    return (f"TensorFlow ModelServer: python -m serving (TensorFlow Serving APIs {_version('tensorflow-serving-api')})"
            f"\nTensorFlow Library: {tf.__version__}")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def serve(argv: list[str]) -> int:
    """Run the server until SIGINT or SIGTERM; 1 if the models could not be loaded."""
    args = parse_flags(argv)
    if args.version:
        print(version_text())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s serving] %(message)s",
                        stream=sys.stderr)
    from quiet import quiet_tensorflow
    quiet_tensorflow()

    from serving.batching import BatchOptions
    from serving.core import Limits, ServerCore
    from serving.errors import ServingError
    from serving.manager import ModelManager, model_config_list
    from serving.metrics import Metrics

    metrics = Metrics()
    configs = args.models if args.models is not None else model_config_list(args.model_name, args.model_base_path)
    try:
        batching = BatchOptions.from_proto(args.batching) if args.enable_batching else None
        manager = ModelManager(configs, max_load_retries=args.max_num_load_retries,
                               load_retry_seconds=args.load_retry_interval_micros / 1e6,
                               allow_labels_for_unavailable=args.allow_version_labels_for_unavailable_models,
                               on_load_attempt=lambda path, ok: metrics.load_attempt_count.inc(
                                   path, "success" if ok else "fail"),
                               session_options=dict(tags=args.saved_model_tags.split(","),
                                                    config=args.session_config,
                                                    max_sessions=args.max_inflight_per_model),
                               load_threads=args.num_load_threads, unload_threads=args.num_unload_threads,
                               allowed_roots=tuple(r for r in args.allowed_model_roots.split(",") if r))
        core = ServerCore(manager, metrics, batching=batching, threads=args.grpc_max_threads,
                          limits=Limits(args.max_request_rows, args.max_request_bytes),
                          warmup_iterations=args.num_request_iterations_for_warmup,
                          codec_threads=args.rest_api_num_threads or 4 * (os.cpu_count() or 1),
                          method_name_check=args.enable_signature_method_name_check)
        if args.enable_model_warmup:
            manager.warmup = core.warmup
        manager.start(args.file_system_poll_wait_seconds)
    except (ServingError, ValueError) as error:
        print(f"python -m serving serve: {getattr(error, 'message', error)}", file=sys.stderr)
        return 1
    if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
        threading.Thread(target=_watch_config, args=(args.model_config_file, args.model_config_file_poll_wait_seconds,
                                                     manager), daemon=True, name="config-poller").start()
    try:
        asyncio.run(_run(args, core))
    except OSError as error:
        print(f"python -m serving serve: {error}", file=sys.stderr)
        return 1
    finally:
        manager.stop()
    return 0


async def _run(args: argparse.Namespace, core) -> None:
    from aiohttp import web

    from serving.grpc_api import start_grpc
    from serving.rest_api import DEFAULT_PROMETHEUS_PATH, RestApi

    loop = asyncio.get_running_loop()

    async def reload(configs) -> None:
        """The reload on a daemon thread: a slow or hostile one never holds up shutdown."""
        done = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if not done.done():
                done.set_exception(error) if error else done.set_result(None)

        def work() -> None:
            try:
                core.manager.reload(configs)
                loop.call_soon_threadsafe(settle, None)
            except BaseException as error:  # handed to the waiting request
                loop.call_soon_threadsafe(settle, error)
        threading.Thread(target=work, daemon=True, name="reload").start()
        await done

    addresses = [f"{args.host}:{args.port}"] + ([f"unix:{args.grpc_socket_path}"] if args.grpc_socket_path else [])
    grpc_server = await start_grpc(core, reload if args.allow_reload_config_rpc else None, addresses,
                                   args.enable_serialization_as_tensor_content, options=args.channel_arguments,
                                   health=args.enable_grpc_healthcheck_service, profiler=args.enable_profiler,
                                   ssl=args.ssl)
    runner = None
    try:
        log.info("Running gRPC ModelServer at %s:%d ...", args.host, args.port)
        if args.rest_api_port:
            prometheus = args.monitoring.prometheus_config
            rest = RestApi(core, timeout_ms=args.rest_api_timeout_in_ms, cors=args.rest_api_enable_cors_support,
                           playground=args.playground,
                           prometheus_path=(prometheus.path or DEFAULT_PROMETHEUS_PATH) if prometheus.enable else None)
            # handler_cancellation: a client that hangs up cancels its request, and so its session run
            runner = web.AppRunner(rest.app(), access_log=None, handler_cancellation=True)
            await runner.setup()
            await web.TCPSite(runner, args.host, args.rest_api_port).start()
            log.info("Exporting HTTP/REST API at:%s:%d ...", args.host, args.rest_api_port)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("Shutting down")
    finally:
        await grpc_server.stop(grace=2)
        if runner is not None:
            await runner.cleanup()


def _watch_config(path: str, seconds: int, manager) -> None:
    """--model_config_file_poll_wait_seconds: re-read the file and apply it as a full replacement."""
    last = read_text_proto(path, ModelServerConfig)
    while True:
        time.sleep(seconds)
        try:
            config = read_text_proto(path, ModelServerConfig)
            if config != last:
                manager.reload(config.model_config_list)
                last = config
        except Exception as error:  # a bad edit is logged; the old config keeps serving
            log.error("reloading %s failed: %s", path, getattr(error, "message", error))
