"""The command line generated from config dataclasses: presets, overrides, clear errors."""
import argparse
import dataclasses

import pytest

from rundir import config_values
from tests.helpers import exits_2
from training.config import parse_config
from training.vae import DERIVED, PRESETS


def parse(*argv: str):
    return parse_config(list(argv), argparse.ArgumentParser(prog="test"), PRESETS, "demo", hidden=DERIVED)[0]


def test_preset_with_typed_overrides():
    config = parse("--preset", "smoke", "--beta=4", "--hidden_units=32,16", "--binarize=false", "--epochs", "3")
    assert config.model.beta == 4.0 and config.model.hidden_units == (32, 16)
    assert config.binarize is False and config.epochs == 3
    assert config.model.architecture == PRESETS["smoke"]().model.architecture  # untouched


def test_default_preset_is_demo():
    assert parse() == PRESETS["demo"]()


def test_config_values_name_every_option_once():
    flat = config_values(PRESETS["smoke"]())
    assert flat["beta"] == 1.0 and flat["epochs"] == 2 and "model" not in flat


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "argument --preset: invalid choice: 'nope'"),
    (["--no_such_key=1"], "unrecognized arguments: --no_such_key=1"),
    (["--epochs=many"], "argument --epochs: invalid int value: 'many'"),
    (["--architecture=rnn"], "argument --architecture: invalid choice: 'rnn'"),
    (["--epochs=0"], "--epochs: epochs must be at least 1, got 0"),
    (["--image_shape=1,2,3"], "unrecognized arguments"),  # derived from the data
])
def test_bad_options_exit_2_with_one_sentence(argv, message, capsys):
    assert message in exits_2(lambda: parse(*argv), capsys)


@dataclasses.dataclass(frozen=True)
class Window:
    low: int = 0
    """first value"""
    high: int = 1
    """last value"""

    def __post_init__(self):
        if self.low > self.high:
            raise ValueError(f"low must not exceed high, got {self.low} > {self.high}")


def test_overrides_are_checked_together_not_one_at_a_time(capsys):
    def window(*argv: str) -> Window:
        return parse_config(list(argv), argparse.ArgumentParser(prog="test"), {"unit": Window}, "unit")[0]
    # applied one at a time, low=5 would meet the preset's high=1 and be refused
    assert window("--low=5", "--high=9") == Window(5, 9)
    with pytest.raises(SystemExit):
        window("--low=5", "--high=3")
    assert "--low, --high: low must not exceed high, got 5 > 3" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--gradient_estimator=score_function", "--estimator_samples=4"],
    ["--estimator_samples=4", "--gradient_estimator=score_function"],
    ["--latent=bernoulli", "--gradient_estimator=score_function", "--estimator_samples=2"],
])
def test_overrides_that_depend_on_each_other_apply_together_in_any_order(argv):
    config = parse("--preset=smoke", *argv)
    assert config.model.gradient_estimator == "score_function" and config.model.estimator_samples >= 2


def test_a_check_across_fields_names_the_options_it_is_about(capsys):
    # M = 1: no leave-one-out; every option given is named, in the config's order
    err = exits_2(lambda: parse("--preset=smoke", "--gradient_estimator=score_function", "--beta=2"), capsys)
    assert "--beta, --gradient_estimator: the leave-one-out baseline needs estimator_samples >= 2" in err
