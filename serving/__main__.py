"""`python -m serving serve [tensorflow_model_server flags]` or `python -m serving query ...`."""
import os
import sys

# The server and the client run graphs and protos, never Keras; TensorFlow imports Keras at start
# (1.5-1.9 s of a 7.5 s start, measured here) unless told to use the legacy tf_keras, which is then imported
# only if installed. A user's own setting stands.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "query"):
        print("usage: python -m serving serve [--port=8500 --model_name=NAME --model_base_path=PATH ...]\n"
              "       python -m serving query {status,metadata,sample,act,play} ...", file=sys.stderr)
        return 2
    if argv[0] == "serve":
        from serving.server import serve
        return serve(argv[1:])
    from serving.query import query
    return query(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
