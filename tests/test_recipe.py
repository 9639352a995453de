"""Recipe validation: exact messages with file, line, column, step path and suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CONFIGS, SMALL_RECIPE

from augctl.cli import main
from augctl.errors import RecipeError
from augctl.recipe import load_recipe, parse_recipe

CASES = [
    (
        "version: 1\npipeline:\n  - rotate: {degree: 3}\n",
        "r.yaml:3:14: pipeline[0].rotate: unknown rotate parameter 'degree'; did you mean 'degrees'?",
    ),
    (
        "version: 1\npipeline:\n  - hflip\n  - one_of:\n      - brightnes: {factor: 0.5}\n",
        "r.yaml:5:9: pipeline[1].one_of[0]: unknown op 'brightnes'; did you mean 'brightness'?",
    ),
    ("version: 1\nvarients: 3\n", "r.yaml:2:1: unknown key 'varients'; did you mean 'variants'?"),
    ("version: 2\n", "r.yaml:1:10: version: unsupported recipe version 2 (supported: 1)"),
    ("seed: 1\n", "r.yaml:1:1: missing required key 'version' (add 'version: 1')"),
    ("version: 1\nversion: 1\n", "r.yaml:2:1: 'version' is given twice"),
    (
        "version: 1\npipeline:\n  - rotate: {degrees: [20, -20]}\n",
        "r.yaml:3:23: pipeline[0].rotate.degrees: expected lo <= hi, got [20.0, -20.0]",
    ),
    (
        "version: 1\npipeline:\n  - hflip: {p: 1.5}\n",
        "r.yaml:3:16: pipeline[0].hflip.p: expected a probability in [0, 1], got 1.5",
    ),
    (
        "version: 1\noutput: {format: jpgg}\n",
        "r.yaml:2:18: output.format: unknown format 'jpgg'; did you mean 'jpeg'?",
    ),
    (  # case is ignored in the suggestion: 'HFlip' is closest to 'vflip' case-sensitively
        "version: 1\npipeline:\n  - HFlip\n",
        "r.yaml:3:5: pipeline[0]: unknown op 'HFlip'; did you mean 'hflip'?",
    ),
    (
        "version: 1\noutput: {format: JPEG}\n",
        "r.yaml:2:18: output.format: unknown format 'JPEG'; did you mean 'jpeg'?",
    ),
    (
        "version: 1\nvariants: -1\n",
        "r.yaml:2:11: variants: expected an integer in [0, 100000], got -1",
    ),
    (
        "version: 1\npipeline:\n  - some_of: {n: [1, 3], steps: [hflip, vflip]}\n",
        "r.yaml:3:18: pipeline[0].some_of.n: expected n or [lo, hi] with 0 <= lo <= hi <= 2, got [1, 3]",
    ),
    (
        "version: 1\npipeline:\n  - {hflip: null, vflip: null}\n",
        "r.yaml:3:5: pipeline[0]: expected a step: a mapping with exactly one op name as key, got a mapping",
    ),
    (
        "version: 1\npipeline: [\n",
        "r.yaml:3:1: not valid YAML: expected the node content, but found '<stream end>'",
    ),
    (
        "version: 1\nvariants: 3\nbalance: {target_per_class: 10}\n",
        "r.yaml:3:1: balance: give either 'variants' or 'balance', not both",
    ),
    (
        "version: 1\npipeline:\n  - resize: {size: [0, 10]}\n",
        "r.yaml:3:20: pipeline[0].resize.size: expected one or two integers > 0, got [0, 10]",
    ),
    (
        "version: 1\ninput: {extensions: []}\n",
        "r.yaml:2:21: input.extensions: expected a list like [.jpg, .png], got an empty list",
    ),
    (
        "version: 1\ninput: {extensions: [.jpg, 1]}\n",
        "r.yaml:2:21: input.extensions: expected a list like [.jpg, .png], got a list holding 1, "
        "which is not an extension",
    ),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_error_messages(text: str, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml")
    assert str(info.value) == message


def test_cli_recipe_error_exits_2_without_traceback(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\npipeline:\n  - rotate: {degree: 3}\n")
    (tmp_path / "in" / "a").mkdir(parents=True)
    result = CliRunner().invoke(
        main, ["expand", "-r", str(recipe), str(tmp_path / "in"), str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"augctl: error: {recipe}:3:14: pipeline[0].rotate: "
        "unknown rotate parameter 'degree'; did you mean 'degrees'?\n"
    )
    assert not (tmp_path / "out").exists()  # validation happens before anything is touched


def test_missing_recipe_file() -> None:
    result = CliRunner().invoke(main, ["validate", "nope.yaml"])
    assert result.exit_code == 2
    assert result.stderr == "augctl: error: nope.yaml: no such file\n"


def test_normalized_form_fills_defaults_and_is_stable() -> None:
    recipe = parse_recipe(SMALL_RECIPE)
    data = recipe.to_dict()
    assert data["pipeline"][0] == {
        "rotate": {
            "degrees": [-20.0, 20.0],
            "expand": False,
            "fill": 0,
            "resample": "bilinear",
            "p": 0.8,
        }
    }
    assert data["pipeline"][2]["one_of"]["steps"][1] == {
        "contrast": {"factor": [0.7, 1.3], "p": 1.0}
    }
    assert data["output"] == {
        "format": "jpeg",
        "quality": 90,
        "background": 255,
        "compress_level": 6,
        "lossless": False,
        "subsampling": "4:2:0",
        "icc": "keep",
        "exif": "strip",
    }
    # The normalized form is itself a valid recipe with the same identity.
    assert parse_recipe(recipe.to_yaml()).sha256 == recipe.sha256
    assert parse_recipe(SMALL_RECIPE.replace("seed: 7", "seed: 8")).sha256 != recipe.sha256


def test_fixed_value_and_range_forms() -> None:
    recipe = parse_recipe(
        "version: 1\npipeline:\n  - rotate: {degrees: 10}\n  - brightness: {factor: [1.1, 1.1]}\n"
    )
    assert recipe.pipeline[0].config["degrees"] == 10.0
    assert recipe.pipeline[1].config["factor"] == 1.1


def test_validate_prints_normalized_recipe(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(CONFIGS / "basic.yaml")])
    assert result.exit_code == 0
    assert parse_recipe(result.stdout).sha256 == load_recipe(CONFIGS / "basic.yaml").sha256
    assert (
        "\n# steps:\n#   pipeline[0]                  rotate(degrees=[-15.0, 15.0]" in result.stdout
    )
    assert f"# recipe sha256: {load_recipe(CONFIGS / 'basic.yaml').sha256}\n" in result.stdout


def test_dict_recipe() -> None:
    recipe = load_recipe({"version": 1, "variants": 2, "pipeline": [{"hflip": None}]})
    assert recipe.variants == 2 and recipe.pipeline[0].op.name == "hflip"


@pytest.mark.parametrize(
    "text",
    [
        *(p.read_text() for p in sorted(CONFIGS.glob("*.yaml"))),
        "version: 1\nbalance: {target_per_class: 3}\npipeline:\n  - hflip\n",
        "version: 1\nvariants: 5\nbalance: {target_per_class: 3}\nresampler: opencv\n",
    ],
)
def test_the_normalized_form_loads_back_as_the_same_recipe(text: str) -> None:
    """What run.json and `augctl validate` record loads back, same recipe, same sha256 (a
    balance recipe's normalized form lists variants' default beside balance, which the
    loader refused: verify --deep and replay failed on every balanced run)."""
    recipe = parse_recipe(text, "r.yaml")
    again = load_recipe(recipe.to_dict())
    assert again.to_dict() == recipe.to_dict() and again.sha256 == recipe.sha256


def test_a_recipe_changed_in_code_is_checked_as_a_file_is() -> None:
    """Recipe.replace went unchecked: format='bmp' failed deep in a run with a bare KeyError,
    and version=99, variants=-1 or icc='maybe' were taken as they were."""
    recipe = load_recipe(CONFIGS / "basic.yaml")
    for change, message in (
        ({"format": "bmp"}, "output.format: unknown format 'bmp'"),
        ({"version": 99}, "version: unsupported recipe version 99"),
        ({"variants": -1}, "variants: expected an integer in [0, 100000], got -1"),
        ({"icc": "maybe"}, "output.icc: unknown icc 'maybe'"),
    ):
        with pytest.raises(RecipeError) as info:
            recipe.replace(**change)
        assert str(info.value).startswith(f"{CONFIGS / 'basic.yaml'}: {message}"), info.value
    changed = recipe.replace(seed=7, variants=2)
    assert (changed.seed, changed.variants, changed.source) == (7, 2, recipe.source)
    assert changed.pipeline == recipe.pipeline


def test_a_recipe_dict_with_values_yaml_cannot_hold_is_a_recipe_error() -> None:
    import numpy as np

    with pytest.raises(RecipeError, match="holds only plain values"):
        load_recipe({"version": 1, "pipeline": [{"rotate": {"degrees": np.float64(5)}}]})
