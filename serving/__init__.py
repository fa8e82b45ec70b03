"""A model server with TensorFlow Serving's gRPC and REST APIs and command line, and its client.

    python -m serving serve --model_config_file=/abs/models/models.config --port=8500 --rest_api_port=8501
    python -m serving query sample --model=vae -n 16 --out=samples.png

server.py (flags, start-up) -> grpc_api.py / rest_api.py (the two front ends) -> core.py
(checks and runs a request) -> manager.py (which versions are loaded) and servable.py (one
loaded version, run as the C++ server runs it); batching.py, metrics.py, tensors.py (proto
and JSON conversion), protos.py (config files). client.py and query.py are the client side.
It serves any SavedModel and never imports `zoo` or `training`.
"""
