"""Typed command lines generated from frozen config dataclasses.

A training command is ``--preset NAME`` followed by ``--key=value`` overrides. Every field
of the config (and of the dataclasses nested in it, flattened) becomes one option, typed
and checked from its annotation; its help text is the field's docstring. Nothing is
global: the parser is built from the dataclass and returns a new config instance.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

from rundir import UserError, checked_directory

Config = TypeVar("Config")


def check_at_least_one(config: Any, *names: str) -> None:
    """A config's __post_init__ check that each named count or size is at least 1 (ValueError naming it)."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (and its dataclass bases), by name."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, following in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_parse_bool.__name__ = "true|false"  # argparse shows it as the metavar and in errors


def _converter(annotation: Any) -> tuple[Callable[[str], Any], list | None]:
    """(function from text to value, allowed choices) for a field's type annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return type(args[0]), list(args)
    if origin is tuple:
        element, _ = _converter(args[0])

        def parse_tuple(text: str) -> tuple:
            return tuple(element(part) for part in text.split(",") if part.strip())
        parse_tuple.__name__ = f"comma-separated {element.__name__} list"
        return parse_tuple, None
    if origin in (typing.Union, types.UnionType):
        inner, choices = _converter(next(a for a in args if a is not type(None)))

        def parse_optional(text: str):
            return None if text.lower() == "none" else inner(text)
        parse_optional.__name__ = inner.__name__
        return parse_optional, choices
    if annotation is bool:
        return _parse_bool, None
    return annotation, None


def _flat_fields(cls: type, prefix: tuple[str, ...] = ()) -> dict[str, tuple[tuple[str, ...], Any, str]]:
    """Option name -> (path of attribute names, annotation, help) over nested dataclasses."""
    hints, docs, flat = typing.get_type_hints(cls), field_docs(cls), {}
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            for name, entry in _flat_fields(annotation, prefix + (field.name,)).items():
                if name in flat:
                    raise TypeError(f"option --{name} is defined twice in {cls.__name__}")
                flat[name] = entry
        else:
            if field.name in flat:
                raise TypeError(f"option --{field.name} is defined twice in {cls.__name__}")
            flat[field.name] = (prefix + (field.name,), annotation, docs.get(field.name, ""))
    return flat


def _replace(config: Any, changes: dict[tuple[str, ...], Any]) -> Any:
    """`config` with every (attribute path -> value) change applied in one `dataclasses.replace`
    per dataclass, so that checks across fields see all the overrides together."""
    direct = {path[0]: value for path, value in changes.items() if len(path) == 1}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in changes.items():
        if len(path) > 1:
            nested.setdefault(path[0], {})[path[1:]] = value
    direct.update({name: _replace(getattr(config, name), inner) for name, inner in nested.items()})
    return dataclasses.replace(config, **direct)


def parse_config(argv: list[str] | None, parser: argparse.ArgumentParser,
                 presets: dict[str, Callable[[], Config]], default_preset: str, *,
                 hidden: frozenset[str] = frozenset()) -> tuple[Config, argparse.Namespace]:
    """Parse ``--preset NAME --key=value ...`` into a config built from that preset.

    `parser` carries the program's own arguments, which come back in the namespace; `hidden`
    names fields the program derives itself (not settable). Bad input exits with status 2 and
    one sentence naming the option and what was expected.
    """
    parser.add_argument("--preset", choices=sorted(presets), default=default_preset,
                        help="named hyperparameters that reproduce a documented result (default: %(default)s)")
    config_type = type(next(iter(presets.values()))())
    fields = {k: v for k, v in _flat_fields(config_type).items() if k not in hidden}
    group = parser.add_argument_group("overrides", "each changes one value of the preset")
    for name, (_, annotation, help_text) in fields.items():
        convert, choices = _converter(annotation)
        group.add_argument(f"--{name}", type=convert, choices=choices, default=argparse.SUPPRESS,
                           metavar=(None if choices else convert.__name__.upper().replace(" ", "_")),
                           help=help_text)
    args = parser.parse_args(argv)
    given = [name for name in fields if hasattr(args, name)]
    changes = {fields[name][0]: getattr(args, name) for name in given}
    for name in given:
        delattr(args, name)
    try:
        config = _replace(presets[args.preset](), changes)
    except ValueError as error:  # __post_init__ validation
        parser.error(f"{', '.join('--' + name for name in given)}: {error}" if given else str(error))
    return config, args


def use_threads(threads: int) -> None:
    """Give TensorFlow's inter- and intra-op pools `threads` threads each (0: its default, one
    per core), unless its runtime already started in this process (a test, a notebook)."""
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            pass


def run_command(argv: list[str] | None, prog: str, description: str, presets: dict[str, Callable[[], Config]],
                default_preset: str, train: Callable[..., dict], *,
                hidden: frozenset[str] = frozenset(), threads: int | None = None) -> tuple[dict, Path]:
    """`python -m training FAMILY --preset NAME --key=value ... --out RUN_DIR [--no_progress]`:
    parse, then `train(config, out, progress=...)`; (its metrics, the run directory).

    `threads`, if given, adds `--threads` with that default: TensorFlow's threads per pool, a
    choice of speed that leaves the run unchanged (so not a config field a resume compares).
    A UserError (bad data, a run directory holding another run, damaged checkpoints, an
    unusable --out) exits with status 2 and its one sentence.
    """
    parser = argparse.ArgumentParser(prog=f"python -m training {prog}", description=description)
    parser.add_argument("--out", required=True, help="run directory (created; resumed if it exists)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    if threads is not None:
        parser.add_argument("--threads", type=int, default=threads,
                            help="TensorFlow's threads per pool, a matter of speed only (0: TensorFlow's "
                                 "default, one per core; default: %(default)s)")
    config, args = parse_config(argv, parser, presets, default_preset, hidden=hidden)
    if threads is not None and args.threads < 0:
        parser.error(f"--threads must be 0 or more, got {args.threads}")
    try:
        checked_directory(args.out)  # before any data or environment is loaded
        if threads is not None:
            use_threads(args.threads)
        return train(config, args.out, progress=not args.no_progress), Path(args.out)
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
