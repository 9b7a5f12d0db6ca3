"""Options declared once: every command's click options are generated from its options dataclass.

No model is trained here: the library calls behind the commands are replaced by ones that record ``opts``.
"""

from dataclasses import MISSING, is_dataclass

import click
import pytest
from click.testing import CliRunner

from melkit import cli
from melkit.bench.bench import BenchOptions
from melkit.convert.options import ConvertOptions
from melkit.core.metrics import N_BOOT
from melkit.core.recipe import load_recipe
from melkit.data.fetch import FetchOptions
from melkit.data.synth import SynthOptions
from melkit.demo import DemoOptions
from melkit.release.calibrate import CalibrateOptions
from melkit.release.card_document import CardOptions
from melkit.train.trainer import TrainOptions
from melkit.util.errors import BadInputError
from melkit.util.options import SEED, cli_fields, flag_name, option_of

COMMANDS = {  # command path -> (options class, the library function the command hands opts to)
    ("train",): (TrainOptions, "run_train"),
    ("convert",): (ConvertOptions, "run_convert"),
    ("bench",): (BenchOptions, "run_bench"),
    ("card",): (CardOptions, "run_card"),
    ("calibrate",): (CalibrateOptions, "run_calibrate"),
    ("demo",): (DemoOptions, "run_demo"),
    ("data", "synth"): (SynthOptions, "write_synth_dataset"),
    ("data", "fetch"): (FetchOptions, "fetch_set"),
}


def _command(path):
    cmd = cli.main
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def _param(cmd, decl):
    return next(p for p in cmd.params if decl in p.opts)


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


@pytest.fixture
def calls(monkeypatch):
    """Every library entry point of the CLI records what it was given instead of running."""
    seen = {}

    def recorder(name):
        def record(*args, **kwargs):  # the options object, or the keywords of a data function
            seen[name] = next((a for a in args if is_dataclass(a)), kwargs)
            raise click.exceptions.Exit(0)
        return record

    for _, name in COMMANDS.values():
        monkeypatch.setattr(cli, name, recorder(name))
    return seen


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_click_options_match_the_dataclass(path):
    cls, _ = COMMANDS[path]
    cmd = _command(path)
    generated = 0
    for f in cli_fields(cls):
        o = option_of(f)
        if o.switches:
            for name, text in o.switches.items():
                p = _param(cmd, f"--{name}")
                assert p.is_flag and p.help == text
            generated += len(o.switches)
            continue
        p = next(p for p in cmd.params if p.name == f.name)
        generated += 1 + bool(o.off)
        if o.argument:
            assert isinstance(p, click.Argument)
            continue
        assert p.opts == [flag_name(f)] and p.help == o.help
        if isinstance(f.default, bool) or o.is_flag:
            assert p.is_flag, f.name
            continue
        if f.default is MISSING and f.default_factory is MISSING:
            assert p.required, f.name
        elif f.default not in (MISSING, None):
            assert p.default == f.default and p.show_default, f.name
        if o.choices:
            assert tuple(p.type.choices) == tuple(o.choices), f.name
        if o.min is not None or o.max is not None:
            assert (p.type.min, p.type.max, p.type.min_open) == (o.min, o.max, o.min_open), f.name
        if o.off:
            off = _param(cmd, o.off[0])
            assert off.is_flag and off.help == o.off[1]
    # Nothing else on the command but --help and the convert's RUN_DIR.
    others = [p.name for p in cmd.params if p.name not in ("help", "run_dir")]
    assert len(others) == generated


def test_every_option_field_has_help_or_is_self_explaining():
    # Fields left without help are the ones whose name, default and range say it all (as before).
    bare = {f"{cls.__name__}.{f.name}" for cls, _ in COMMANDS.values() for f in cli_fields(cls)
            if not option_of(f).help and not option_of(f).switches and not option_of(f).argument}
    assert bare <= {"TrainOptions.batch_size", "TrainOptions.seed", "TrainOptions.strategy",
                    "ConvertOptions.input_type", "ConvertOptions.output_type", "ConvertOptions.qat_epochs",
                    "ConvertOptions.qat_learning_rate", "ConvertOptions.version", "ConvertOptions.seed",
                    "BenchOptions.warmup", "BenchOptions.seed", "DemoOptions.out", "DemoOptions.seed",
                    "SynthOptions.mel_fraction", "SynthOptions.seed"}


def test_defaults_on_the_command_line_are_the_dataclass_defaults(calls, tmp_path):
    assert run("convert", "RUN", "--float32").exit_code == 0
    assert calls["run_convert"] == ConvertOptions(variants=["float32"])
    assert run("bench", "RUN").exit_code == 0
    assert calls["run_bench"] == BenchOptions(models=["RUN"])
    assert calls["run_bench"].n_boot == N_BOOT and calls["run_bench"].seed == SEED
    assert run("demo").exit_code == 0
    assert calls["run_demo"] == DemoOptions()
    assert run("train", "--data", "D").exit_code == 0
    assert calls["run_train"] == TrainOptions(data="D")
    assert calls["run_train"].recipe == load_recipe("default")
    assert run("data", "synth", tmp_path / "s").exit_code == 0
    assert calls["write_synth_dataset"] == {"out_dir": str(tmp_path / "s"), "n_lesions": 240, "mel_fraction": 0.35,
                                            "seed": 0, "progress": calls["write_synth_dataset"]["progress"]}
    assert run("data", "fetch").exit_code == 0
    assert calls["fetch_set"] == {"name": "ham10000", "to": None, "base_url": None, "retries": 5,
                                  "stall_timeout": 60.0, "deadline": 21600.0, "keep_archives": False,
                                  "echo": cli._echo}


def test_flags_that_map_to_fields_differently(calls):
    r = run("convert", "RUN", "--qat", "--int8", "--int8-mixed", "--no-equalize", "--equalize-margin", "2",
            "--no-align-threshold", "--model-version", "2.0.0", "--float-layer", "a", "--float-layer", "b",
            "--data", "D", "--calibration-images", "40")
    assert r.exit_code == 0, r.output
    o = calls["run_convert"]
    assert o.variants == ["int8", "qat", "int8-mixed"]  # in the declared order
    assert o.equalize_margin is None and o.align_threshold is False and o.version == "2.0.0"
    assert o.float_layers == ["a", "b"] and o.data_dir == "D" and o.calibration_images == 40
    assert run("convert", "RUN", "--int8", "--equalize-margin", "2").exit_code == 0
    assert calls["run_convert"].equalize_margin == 2.0 and calls["run_convert"].align_threshold is True

    r = run("bench", "a.tflite", "b.tflite", "--no-latency", "--no-xnnpack-off", "--bootstrap", "10",
            "--sweep-threads", "0", "--data", "D")
    assert r.exit_code == 0, r.output
    o = calls["run_bench"]
    assert o.models == ["a.tflite", "b.tflite"] and not o.latency and not o.xnnpack_off
    assert (o.n_boot, o.sweep_max_threads, o.data) == (10, 0, ["D"])


def test_train_recipe_overrides(calls):
    r = run("train", "--data", "D", "--recipe", "paper", "--alpha", "0.35", "--image-size", "96",
            "--batch-size", "8", "--epochs", "3", "--threshold-policy", "youden", "--oversample")
    assert r.exit_code == 0, r.output
    recipe = calls["run_train"].recipe
    assert recipe.name == "paper" and (recipe.alpha, recipe.image_size, recipe.batch_size) == (0.35, 96, 8)
    assert recipe.threshold_policy == "youden" and recipe.oversample is True
    assert [s.epochs for s in recipe.stages] == [3]
    # Not given: the recipe's own values.
    assert run("train", "--data", "D", "--recipe", "paper").exit_code == 0
    assert calls["run_train"].recipe == load_recipe("paper")


@pytest.mark.parametrize("args,message", [
    (["convert", "RUN", "--int8", "--calibration-images", "1"], "must be at least 2"),
    (["convert", "RUN", "--int8", "--min-agreement", "0"], "must be in (0, 1]"),
    (["convert", "RUN", "--int8", "--equalize-margin", "0.5"], "must be at least 1.0"),
    (["convert", "RUN", "--int8", "--qat-epochs", "0"], "must be in [1, 100]"),
    (["convert", "RUN", "--int8", "--weight-rounding", "up"], "'up' is not one of"),
    (["bench", "RUN", "--runs", "0"], "must be in [1, 100000]"),
    (["bench", "RUN", "--max-auc-drop", "2"], "must be in [0, 1]"),
    (["bench", "RUN", "--split", "all"], "'all' is not one of"),
    (["demo", "--lesions", "4"], "must be in [12, 100000]"),
    (["demo", "--epochs", "a,b"], "comma-separated"),
    (["train", "--data", "D", "--image-size", "8"], "must be in [32, 1024]"),
    (["train", "--data", "D", "--epochs", "x"], "comma-separated"),
    (["data", "synth", "out", "--mel-fraction", "1"], "must be in [0.05, 0.95]"),
    (["data", "fetch", "--retries", "-1"], "must be in [0, 100]"),
])
def test_out_of_range_exits_2_with_a_clear_message(calls, args, message):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Invalid value for" in r.output
    assert not calls  # nothing ran


def test_missing_required_option_exits_2(calls):
    r = run("train")
    assert r.exit_code == 2 and "Missing option '--data'" in r.output and not calls


def test_library_callers_get_the_same_checks():
    with pytest.raises(BadInputError, match=r"--calibration-images must be at least 2 \(got 1\)"):
        ConvertOptions(variants=["int8"], calibration_images=1).validate()
    with pytest.raises(BadInputError, match=r"--min-agreement must be in \(0, 1\]"):
        ConvertOptions(variants=["int8"], min_agreement=0).validate()
    with pytest.raises(BadInputError, match="--weight-rounding must be one of compensated, nearest"):
        ConvertOptions(variants=["int8"], weight_rounding="up").validate()
    assert ConvertOptions(variants=["int8"], equalize_margin=None).validate()
    with pytest.raises(BadInputError, match=r"--bootstrap must be in \[1, 100000\]"):
        BenchOptions(models=["RUN"], n_boot=0).validate()
    with pytest.raises(BadInputError, match=r"--sweep-threads must be in \[0, 1024\]"):
        BenchOptions(models=["RUN"], sweep_max_threads=-1).validate()
    with pytest.raises(BadInputError, match="nothing to benchmark"):
        BenchOptions().validate()
    assert BenchOptions(models=["RUN"], threads=None).validate()


def test_train_options_resolve_the_recipe():
    assert TrainOptions(data="D", out="o").recipe == load_recipe("default")
    with pytest.raises(BadInputError, match="unknown recipe"):
        TrainOptions(data="D", recipe="fancy")
    with pytest.raises(BadInputError, match="one number per stage"):
        TrainOptions(data="D", epochs=[1, 2, 3])
