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

from serving.protos import BatchingParameters, ConfigError, ModelServerConfig, MonitoringConfig, read_text_proto

log = logging.getLogger("serving")


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def flag_parser() -> argparse.ArgumentParser:
    """tensorflow_model_server's flags (the ones that mean something here), plus --host."""
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
    add("--tensorflow_intra_op_parallelism", type=int, default=0, help="threads within one op (0: TF decides)")
    add("--tensorflow_inter_op_parallelism", type=int, default=0, help="ops run at once (0: TF decides)")
    add("--saved_model_tags", default="serve", help="MetaGraphDef tags to load, comma separated")
    return parser


def parse_flags(argv: list[str]) -> argparse.Namespace:
    """The flags, checked as the real server checks them; parser.error (exit 2) on a bad combination."""
    parser = flag_parser()
    args = parser.parse_args(argv)
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
    except ConfigError as error:
        parser.error(str(error))
    if args.models is not None and not args.models.config:
        parser.error(f"{args.model_config_file} lists no models: expected a model_config_list with configs")
    if args.monitoring.prometheus_config.enable and not args.rest_api_port:
        parser.error("Prometheus monitoring is served on the REST port: set --rest_api_port")
    if args.playground and not args.rest_api_port:
        parser.error("--playground serves the page on the REST port: set --rest_api_port")
    return args


def serve(argv: list[str]) -> int:
    """Run the server until SIGINT or SIGTERM; 1 if the models could not be loaded."""
    args = parse_flags(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s serving] %(message)s",
                        stream=sys.stderr)
    from quiet import quiet_tensorflow
    quiet_tensorflow()

    from serving.batching import BatchOptions
    from serving.core import ServerCore
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
                                                    intra_op=args.tensorflow_intra_op_parallelism,
                                                    inter_op=args.tensorflow_inter_op_parallelism))
        core = ServerCore(manager, metrics, batching=batching, threads=args.grpc_max_threads)
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
        await loop.run_in_executor(None, core.manager.reload, configs)

    addresses = [f"{args.host}:{args.port}"] + ([f"unix:{args.grpc_socket_path}"] if args.grpc_socket_path else [])
    grpc_server = await start_grpc(core, reload, addresses, args.enable_serialization_as_tensor_content)
    runner = None
    try:
        log.info("Running gRPC ModelServer at %s:%d ...", args.host, args.port)
        if args.rest_api_port:
            prometheus = args.monitoring.prometheus_config
            rest = RestApi(core, timeout_ms=args.rest_api_timeout_in_ms, cors=args.rest_api_enable_cors_support,
                           playground=args.playground,
                           prometheus_path=(prometheus.path or DEFAULT_PROMETHEUS_PATH) if prometheus.enable else None)
            runner = web.AppRunner(rest.app(), access_log=None)
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
