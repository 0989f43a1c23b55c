"""The page's body edits: the built-in body's sliders and the operator's direction files reach the request as
``--edit`` specs; anything else a request sends is refused in the status line.

The page is built, not served; its worker records each request instead of running the job.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from insetgan.app.choices import allowed_networks
from insetgan.app.edits import REFUSED, allowed_directions
from insetgan.errors import InsetganError
from insetgan.models import resolve_network

pytest.importorskip("gradio", reason="the app extra is not installed (pip install .[app])")
STOPPED = "the test's worker records the request instead of running it"


class RecordingWorker:
    """A stand-in for the job worker: it keeps each request and stops the job."""

    def __init__(self) -> None:
        self.requests: list = []

    def run(self, fn, request):
        self.requests.append(request)
        raise InsetganError(STOPPED)
        yield  # a generator, as Worker.run is

    def close(self) -> None:
        """Nothing runs."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A models dir with a copy of the built-in body and another body; a direction file the operator allows."""
    root = tmp_path_factory.mktemp("page-edits")
    models = root / "models"
    models.mkdir()
    shutil.copyfile(resolve_network("default", "body"), models / "copy-of-body.safetensors")
    shutil.copyfile(resolve_network("default", "face"), models / "other.safetensors")
    np.save(root / "smile.npy", np.ones(8, np.float32))
    np.savez(root / "sefa.npz", sefa0=np.ones(8, np.float32), sefa1=np.ones(8, np.float32))
    nets = allowed_networks("default", "default", None, models)
    return root, nets, (str(root / "smile.npy"), f"{root / 'sefa.npz'}:sefa1@2-3")


def _page(root: Path, nets, directions):
    from insetgan.app.page import AppConfig, build_page

    worker = RecordingWorker()
    blocks = build_page(AppConfig(device="cpu", directions=directions), root, nets, worker)
    handlers = {fn.api_name: fn.fn for fn in blocks.fns.values() if fn.api_name in ("compose", "many")}
    toggles = [fn.fn for fn in blocks.fns.values() if str(fn.api_name).startswith("lambda")]
    return handlers, toggles, worker


def _status(handler, *inputs) -> str:
    shown = [value for update in handler(*inputs) for key, value in update.items()
             if str(getattr(key, "elem_id", "")).endswith("-status")]
    return shown[-1]


def _compose(body="default", *edits):
    return (None, "1", None, None, 0, False, "default", 2, False, body, "default", "none", *edits)


def _many(body="default", *edits):
    return (None, "1", 2, 0, 2, body, "default", *edits)


def test_sliders_belong_to_the_built_in_body_by_its_hash(setup):
    root, nets, files = setup
    dirs = allowed_directions(files, nets.body)
    assert dirs.named == ("upper_length", "lower_length")
    assert dirs.bodies == {"default", "copy-of-body.safetensors"}  # not other.safetensors
    assert dirs.menu() == ["none", "smile.npy", "sefa.npz:sefa1@2-3"]
    _, toggles, _ = _page(root, nets, files)
    assert len(toggles) == 2  # one per tab with sliders
    shown, *values = toggles[0]("other.safetensors")
    assert shown["visible"] is False and values == [0, 0]
    assert toggles[0]("copy-of-body.safetensors")[0]["visible"] is True
    with pytest.raises(InsetganError, match="--directions: direction file not found"):
        allowed_directions([str(root / "missing.npy")], nets.body)
    with pytest.raises(InsetganError, match="two directions are named smile.npy"):
        (root / "other").mkdir(exist_ok=True)
        np.save(root / "other" / "smile.npy", np.zeros(8, np.float32))
        allowed_directions([files[0], str(root / "other" / "smile.npy")], nets.body)


def test_slider_and_direction_values_reach_the_request_as_edits(setup):
    root, nets, files = setup
    handlers, _, worker = _page(root, nets, files)
    assert _status(handlers["compose"], *_compose("default", 1.5, -2, "sefa.npz:sefa1@2-3", 0.5)).endswith(STOPPED)
    assert worker.requests[-1].edits == ("default-body:upper_length=1.5", "default-body:lower_length=-2",
                                         f"{root / 'sefa.npz'}:sefa1@2-3=0.5")
    assert _status(handlers["many"], *_many("copy-of-body.safetensors", 0, 3, "smile.npy", -4)).endswith(STOPPED)
    assert worker.requests[-1].edits == ("default-body:lower_length=3", f"{root / 'smile.npy'}=-4")
    # Zero strengths and the "none" entry are no edit; a request without edit values (an older client) neither.
    for inputs in (_compose("default", 0, 0, "smile.npy", 0), _compose("default", 0, 0, "none", 2), _compose()):
        assert _status(handlers["compose"], *inputs).endswith(STOPPED)
        assert worker.requests[-1].edits == ()
    # An operator's direction applies to any body (the job checks its shape).
    assert _status(handlers["compose"], *_compose("other.safetensors", 0, 0, "smile.npy", 1)).endswith(STOPPED)
    assert worker.requests[-1].edits == (f"{root / 'smile.npy'}=1",)


def test_an_unknown_direction_gets_one_refusal(setup):
    root, nets, files = setup
    handlers, _, worker = _page(root, nets, files)
    before = len(worker.requests)
    values = [str(root / "smile.npy"), "/etc/passwd", "missing.npy", "sefa.npz", "sefa.npz:sefa0", "default-body",
              "default-body:upper_length", 3, ["smile.npy"], {"path": "smile.npy"}]
    for value in values:
        assert _status(handlers["compose"], *_compose("default", 0, 0, value, 1)) == f"**Error:** {REFUSED}"
        assert _status(handlers["many"], *_many("default", 0, 0, value, 1)) == f"**Error:** {REFUSED}"
    assert len(worker.requests) == before and list((root / "jobs").iterdir()) == []


@pytest.mark.parametrize("edits, message", [
    ((1, 0), "the upper_length slider belongs to the built-in body: choose it under Networks"),
    ((0, -0.5), "the lower_length slider belongs to the built-in body: choose it under Networks"),
])
def test_sliders_with_another_body_are_refused(setup, edits, message):
    root, nets, files = setup
    handlers, _, _ = _page(root, nets, files)
    assert _status(handlers["compose"], *_compose("other.safetensors", *edits)) == f"**Error:** {message}"


@pytest.mark.parametrize("edits, message", [
    ((5, 0), "the upper_length slider must be a number in [-3, 3], got 5.0"),
    (("nan", 0), "the upper_length slider must be a finite number, got 'nan'"),
    ((0, 0, "smile.npy", 11), "the direction's strength must be a number in [-10, 10], got 11.0"),
    ((0, 0, "smile.npy", 1, 7), "a request takes at most 4 edit values, got 5"),
])
def test_bad_edit_values_are_one_line_in_the_status(setup, edits, message):
    root, nets, files = setup
    handlers, _, _ = _page(root, nets, files)
    assert _status(handlers["compose"], *_compose("default", *edits)) == f"**Error:** {message}"
    assert _status(handlers["many"], *_many("default", *edits)) == f"**Error:** {message}"


def test_without_built_in_directions_or_files_there_are_no_edit_controls(setup, monkeypatch):
    root, nets, _ = setup
    monkeypatch.setattr("insetgan.app.edits.builtin_record", lambda: {})
    handlers, toggles, worker = _page(root, nets, ())
    assert toggles == []
    assert _status(handlers["compose"], *_compose("default", 1)) == \
        "**Error:** a request takes at most 0 edit values, got 1"
