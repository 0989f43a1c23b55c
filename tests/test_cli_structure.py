"""The CLI's shared behaviour: built-in names everywhere, finite numbers, one error type, progress lines."""
from __future__ import annotations

import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from insetgan.cli import cli
from insetgan.cli.common import handle_errors
from insetgan.errors import InsetganError
from insetgan.networks.errors import CheckpointError
from insetgan.progress import ProgressBar


def invoke(*args: str) -> click.testing.Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_generate_takes_builtin_names(tmp_path: Path) -> None:
    res = invoke("generate", "--network", "default-face", "--seeds", "0-1", "--outdir", tmp_path)
    assert res.exit_code == 0, res.output
    assert {"seed0000.png", "seed0001.png", "grid.png", "report.json"} <= {p.name for p in tmp_path.iterdir()}
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["inputs"]["path"].endswith("face.safetensors") and report["generator"]["img_resolution"] == 64


def test_default_needs_a_role_and_unknown_names_fail(tmp_path: Path) -> None:
    res = invoke("generate", "--network", "default", "--seeds", "0", "--outdir", tmp_path / "a")
    assert res.exit_code == 1 and "default-face" in res.output and not (tmp_path / "a").exists()
    res = invoke("inspect", "default-hands")
    assert res.exit_code == 1 and "unknown built-in model" in res.output


@pytest.mark.parametrize("args", [["generate", "--network", "default-face", "--seeds", "0", "--trunc", "nan"],
                                  ["train", "--data", "x", "--outdir", "y", "--lr", "inf"],
                                  ["compose", "--trunc", "-inf", "--outdir", "z"]])
def test_non_finite_numbers_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    res = invoke(*args)
    assert res.exit_code == 2 and "not a finite number" in res.output


def test_models_lists_the_builtins() -> None:
    res = invoke("models", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == ["default-body", "default-face", "default-shoes"]
    assert [r["resolution"] for r in rows] == [[256, 128], [64, 64], [32, 32]]
    assert all(0 < r["bytes"] <= 15e6 and "MODEL_CARD.md" in r["card"] for r in rows)
    text = invoke("models").output
    assert "default-body" in text and "256x128" in text


def test_only_user_errors_become_one_line_messages() -> None:
    @handle_errors
    def user() -> None:
        raise InsetganError("bad input\nsecond line")

    @handle_errors
    def checkpoint() -> None:
        raise CheckpointError("bad file")

    @handle_errors
    def bug() -> None:
        raise ValueError("an internal bug")

    with click.Context(cli, obj=None):
        with pytest.raises(click.ClickException, match="^bad input$"):
            user()
        with pytest.raises(click.ClickException, match="bad file"):
            checkpoint()
        with pytest.raises(ValueError, match="internal bug"):  # not turned into a user error
            bug()


def test_progress_off_a_terminal_prints_few_lines() -> None:
    out = io.StringIO()
    bar = ProgressBar("job", stream=out, tty=False, every_s=1e9)
    for step in range(1, 5001):
        bar(step, 5000, {"total": 1.0 / step})
    bar.close()
    lines = out.getvalue().splitlines()
    assert 15 <= len(lines) <= 22, len(lines)
    assert lines[0].startswith("job:   0% (1/5000") and lines[-1].startswith("job: 100% (5000/5000")
    quiet = io.StringIO()
    silent = ProgressBar("job", stream=quiet, tty=False, quiet=True)
    silent(1, 2, {})
    assert quiet.getvalue() == ""
