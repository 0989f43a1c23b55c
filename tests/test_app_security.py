"""``insetgan app`` facing hostile requests: only the offered networks, checked values, stage limits, cleanup.

The menus and the refusals are checked on the page's handlers directly (no server); the same
refusals, the stage time limit and the removal of the work folder on SIGTERM/SIGINT are then
checked on a real ``python -m insetgan app`` process over HTTP.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from insetgan.app.choices import NetworkChoices, allowed_networks
from insetgan.errors import InsetganError
from tests.app_server import start_app
from tests.conftest import REPO

gradio_client = pytest.importorskip("gradio_client", reason="the app extra is not installed (pip install .[app])")
SELFIE = REPO / "examples" / "selfie.jpg"
REFUSED = "the {} network must be one of the networks offered on this page"
MAX_SEED = 2**32 - 1


def _models(folder: Path) -> Path:
    """A --models-dir: two checkpoint names, a hidden file, a text file and a folder named like a checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "junk.pkl").write_bytes(b"not a pickle")
    (folder / "b.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (folder / ".hidden.pkl").write_bytes(b"x")
    (folder / "notes.txt").write_text("not offered\n")
    (folder / "dir.pkl").mkdir(exist_ok=True)
    return folder


def _evil_pickle(path: Path) -> Path:
    """A small crafted pickle (a list that holds itself), as an attacker would upload it."""
    import pickle

    loop: list = []
    loop.append(loop)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"G_ema": loop}))
    return path


# --- the menus ----------------------------------------------------------------------------------

def test_the_menus_offer_the_operators_networks_first_then_the_built_in_ones_and_the_models_dir(tmp_path):
    models = _models(tmp_path / "models")
    mine = tmp_path / "elsewhere" / "my-face.pt"
    mine.parent.mkdir()
    mine.write_bytes(b"x")
    nets = allowed_networks("default", str(mine), None, models)
    assert nets.names("body") == ["default", "b.safetensors", "junk.pkl"]
    assert nets.names("face") == ["my-face.pt", "default", "b.safetensors", "junk.pkl"]
    assert nets.names("shoes") == ["none", "default", "b.safetensors", "junk.pkl"]
    assert nets.resolve("face", "my-face.pt") == str(mine.resolve())
    assert nets.resolve("body", "junk.pkl") == str((models / "junk.pkl").resolve())
    assert nets.resolve("body", "default") == "default" and nets.resolve("shoes", "none") is None
    # the same file named twice is offered once; two files under one name are an error at start
    assert allowed_networks(str(models / "junk.pkl"), "default", None, models).names("body")[:2] == ["junk.pkl",
                                                                                                    "default"]
    other = tmp_path / "other" / "junk.pkl"
    other.parent.mkdir()
    other.write_bytes(b"y")
    with pytest.raises(InsetganError, match="two checkpoints are named junk.pkl"):
        allowed_networks(str(other), "default", None, models)
    with pytest.raises(InsetganError, match="--face-net: checkpoint not found"):
        allowed_networks("default", str(tmp_path / "missing.pkl"), None, None)
    with pytest.raises(InsetganError, match="--models-dir: no such folder"):
        allowed_networks("default", "default", None, tmp_path / "missing")


def test_any_other_value_gets_one_refusal_whether_or_not_such_a_file_exists(tmp_path):
    models = _models(tmp_path / "models")
    upload = _evil_pickle(tmp_path / "gradio" / "0123abcd" / "evil.pkl")  # where an upload would land
    nets: NetworkChoices = allowed_networks("default", "default", None, models)
    values = [str(models / "junk.pkl"), str(models / ".hidden.pkl"), str(models / "notes.txt"), "dir.pkl",
              "/etc/passwd", str(tmp_path / "missing.pkl"), str(upload), "evil.pkl", "../models/junk.pkl",
              "default-face", "junk", "", None, 3, ["junk.pkl"], {"path": "junk.pkl"}]
    for role in ("body", "face", "shoes"):
        answers = set()
        for value in values:
            with pytest.raises(InsetganError) as err:
                nets.resolve(role, value)
            answers.add(str(err.value))
        assert answers == {REFUSED.format(role)}


# --- the handlers, called directly --------------------------------------------------------------

@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page's handlers by API name (built, not served; its worker starts only if a job runs), and its root."""
    from insetgan.app.page import AppConfig, build_page
    from insetgan.app.runner import Worker

    root = tmp_path_factory.mktemp("page")
    models = _models(root / "models")
    cfg = AppConfig(models_dir=models, device="cpu")
    worker = Worker()
    blocks = build_page(cfg, root, allowed_networks("default", "default", None, models), worker)
    handlers = {fn.api_name: fn.fn for fn in blocks.fns.values() if fn.api_name in ("compose", "many", "fix")}
    assert all(not fn.preprocess for fn in blocks.fns.values() if fn.api_name in handlers)
    yield handlers, root
    worker.close()


def _status(handler, *inputs) -> str:
    """The last status line a handler shows for ``inputs``."""
    shown = [value for update in handler(*inputs) for key, value in update.items()
             if str(getattr(key, "elem_id", "")).endswith("-status")]
    return shown[-1]


def _compose(face_seed="1", body_seed=0, random_body=False, preset="default", steps=2, pti=False, body="default",
             face="default", shoes="none", selfie=None):
    return (selfie, face_seed, None, None, body_seed, random_body, preset, steps, pti, body, face, shoes)


def test_handlers_refuse_paths_and_uploads_as_networks_with_one_answer(page):
    handlers, root = page
    upload = _evil_pickle(root / "gradio" / "0123abcd" / "evil.pkl")
    existing, missing = str(root / "models" / "junk.pkl"), str(root / "models" / "missing.pkl")
    for value in (existing, missing, "/etc/passwd", str(upload), "evil.pkl"):
        assert _status(handlers["compose"], *_compose(face=value)) == f"**Error:** {REFUSED.format('face')}"
        assert _status(handlers["compose"], *_compose(body=value)) == f"**Error:** {REFUSED.format('body')}"
        assert _status(handlers["compose"], *_compose(shoes=value)) == f"**Error:** {REFUSED.format('shoes')}"
        many = (None, "1", 2, 0, 2, "default", value)
        assert _status(handlers["many"], *many) == f"**Error:** {REFUSED.format('face')}"
        fix = ({"path": str(upload)}, None, 2, True, value)
        assert _status(handlers["fix"], *fix) == f"**Error:** {REFUSED.format('face')}"


@pytest.mark.parametrize("inputs, message", [
    (_compose(face_seed="nan"), "the face seed must be a whole number, got 'nan'"),
    (_compose(face_seed="1.5"), "the face seed must be a whole number, got '1.5'"),
    (_compose(face_seed=str(MAX_SEED + 1)), f"the face seed must be in 0..{MAX_SEED}, got {MAX_SEED + 1}"),
    (_compose(body_seed=-1), f"the body seed must be in 0..{MAX_SEED}, got -1"),
    (_compose(body_seed=float("inf")), "the body seed must be a whole number, got 'inf'"),
    (_compose(steps=10**12), "steps must be in 1..400, got 1000000000000"),
    (_compose(steps="nan"), "steps must be a whole number, got 'nan'"),
    (_compose(steps=0), "steps must be in 1..400, got 0"),
    (_compose(preset="/etc/passwd"), "the preset must be one of default, paper, stylegan-human"),
    (_compose(pti="yes"), "pivotal tuning must be true or false"),
    (_compose(face_seed="", selfie=None), "upload your selfie, or give a face seed"),
    (_compose(selfie={"path": "/etc/passwd"}), "the uploaded selfie is missing; upload it again"),
    (_compose(selfie={"path": "/nonexistent/selfie.jpg"}), "the uploaded selfie is missing; upload it again"),
    (_compose(selfie="selfie.jpg"), "the uploaded selfie is missing; upload it again"),
])
def test_handlers_put_bad_values_in_the_status_line(page, inputs, message):
    handlers, _ = page
    assert _status(handlers["compose"], *inputs) == f"**Error:** {message}"


@pytest.mark.parametrize("count, first, message", [
    (4, MAX_SEED, f"body seed {MAX_SEED + 3} is out of range (0..{MAX_SEED})"),
    (17, 0, "the number of bodies must be in 1..16, got 17"),
    (2, "nan", "the first body seed must be a whole number, got 'nan'"),
])
def test_many_bodies_checks_its_seeds_in_the_status_line(page, count, first, message):
    handlers, root = page
    assert _status(handlers["many"], None, "1", count, first, 2, "default", "default") == f"**Error:** {message}"
    assert list((root / "jobs").iterdir()) == []


def test_the_page_does_not_import_the_command_line():
    code = ("import sys, insetgan.app.page, insetgan.app.runner, insetgan.app.choices; "
            "print(sorted(m for m in sys.modules if m.startswith('insetgan.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# --- a real server ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``insetgan app`` with a --models-dir, a 2 s limit on optimisation and its default (temporary) work folder."""
    work = tmp_path_factory.mktemp("app-security")
    (work / "tmp").mkdir()
    models = _models(work / "models")
    try:
        app = start_app(["--models-dir", str(models), "--stage-timeout", "optimisation=2"], work,
                        env={"TMPDIR": str(work / "tmp")})
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield app, work
    app.stop()


def _client(url: str, tmp: Path):
    return gradio_client.Client(url, verbose=False, download_files=str(tmp), analytics_enabled=False)


def _upload(url: str, path: Path) -> str:
    """Upload a file as the page does; the path the server stored it at."""
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, f)}, timeout=60)
    r.raise_for_status()
    return r.json()[0]


def test_http_paths_and_uploads_are_refused_with_one_answer(server, tmp_path):
    app, work = server
    client = _client(app.url, tmp_path)
    uploaded = _upload(app.url, _evil_pickle(tmp_path / "evil.pkl"))
    assert Path(uploaded).is_file()  # the upload is on the server, and still cannot be named
    answers = set()
    for value in (str(work / "models" / "junk.pkl"), str(work / "models" / "missing.pkl"), "/etc/passwd",
                  uploaded, "evil.pkl", Path(uploaded).name):
        answers.add(client.predict(*_compose(face=value), api_name="/compose")[0])
    assert answers == {f"**Error:** {REFUSED.format('face')}"}
    # the crafted upload given as the selfie is read as a photo, never as a network
    status = client.predict(*_compose(face_seed="", selfie=gradio_client.handle_file(str(tmp_path / "evil.pkl"))),
                            api_name="/compose")[0]
    assert status.startswith("**Error:**") and "\n" not in status and "network" not in status


def test_http_bad_values_come_back_in_the_status_line(server, tmp_path):
    app, _ = server
    client = _client(app.url, tmp_path)
    assert client.predict(*_compose(face_seed="nan"), api_name="/compose")[0] == \
        "**Error:** the face seed must be a whole number, got 'nan'"
    assert client.predict(*_compose(steps=10**12), api_name="/compose")[0] == \
        "**Error:** steps must be in 1..400, got 1000000000000"
    status = client.predict(None, "1", 4, MAX_SEED, 2, "default", "default", api_name="/many")[0]
    assert status == f"**Error:** body seed {MAX_SEED + 3} is out of range (0..{MAX_SEED})"


def test_http_a_stage_over_its_limit_frees_the_worker_for_the_next_job(server, tmp_path):
    app, work = server
    client = _client(app.url, tmp_path)
    t0 = time.monotonic()
    status = client.predict(*_compose(steps=400), api_name="/compose")[0]  # minutes of optimisation on a CPU
    assert status == "**Error:** the optimisation stage ran over its time limit (2 s); the job was stopped"
    assert time.monotonic() - t0 < 60
    status = client.predict(*_compose(face="junk.pkl"), api_name="/compose")[0]  # loaded by the fresh worker
    assert status.startswith("**Error:**") and "junk.pkl: unrecognised file format" in status
    assert time.monotonic() - t0 < 90
    assert not list(work.glob("tmp/insetgan-app-*/jobs/*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_server_removes_its_work_folder(tmp_path, sig):
    (tmp_path / "tmp").mkdir()
    app = start_app([], tmp_path, env={"TMPDIR": str(tmp_path / "tmp")})
    try:
        [root] = (tmp_path / "tmp").glob("insetgan-app-*")
        uploaded = Path(_upload(app.url, SELFIE))
        assert uploaded.is_relative_to(root) and uploaded.is_file()
        if sig == signal.SIGTERM:  # a finished job leaves its images and zip in the work folder while up
            client = _client(app.url, tmp_path / "dl")
            client.predict(*_compose(steps=1), api_name="/compose")
            assert list(root.rglob("*.zip"))
        children = app.children()
        assert app.workers()
    finally:
        code = app.stop(sig)
    assert code == 0 and not root.exists()
    deadline = time.monotonic() + 20  # the worker is killed; multiprocessing's helper process follows the server
    while [pid for pid in children if Path(f"/proc/{pid}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert "Traceback" not in app.log.read_text()


def test_the_app_command_refuses_bad_options_before_serving(tmp_path):
    from tests.cli_run import assert_one_line_error, run

    (tmp_path / "file.pkl").write_bytes(b"x")
    for args, message in [(["--stage-timeout", "cooking=5"], "unknown stage 'cooking'"),
                          (["--stage-timeout", "nan"], "a time limit must be a number of seconds"),
                          (["--stage-timeout", "loading=0"], "a time limit must be a number of seconds"),
                          (["--face-net", str(tmp_path / "missing.pkl")], "--face-net: checkpoint not found"),
                          (["--models-dir", str(tmp_path / "missing")], "--models-dir: no such folder"),
                          (["--body", str(tmp_path / "file.pkl"), "--models-dir", str(tmp_path / "other")],
                           "--models-dir: no such folder")]:
        assert_one_line_error(run("app", "--port", "1", *args), message)


def test_page_and_command_line_build_the_same_embedding_settings(page, monkeypatch):
    """The page and `compose` build a selfie's embedding through one constructor with the same defaults."""
    from insetgan.app import page as page_module
    from insetgan.cli.compose import compose
    from insetgan.inversion.invert import InvertConfig, PTIConfig
    from insetgan.jobs.options import request_from
    from insetgan.jobs.requests import ComposeRequest

    handlers, _ = page
    seen = []

    def capture(worker, fn, request, status):
        seen.append(request)
        raise InsetganError("captured")
        yield  # a generator, like the real one

    monkeypatch.setattr(page_module, "drive", capture)
    for pti in (False, True):
        assert _status(handlers["compose"], *_compose(pti=pti)) == "**Error:** captured"
    defaults = {p.name: p.default for p in compose.params}
    cli = request_from(ComposeRequest, {"invert_steps": defaults["invert_steps"],
                                        "identity_weight": defaults["identity_weight"]}).embed_config
    assert seen[0].embed_config == cli and seen[0].identity_weight == defaults["identity_weight"]
    assert defaults["pti_steps"] is None and seen[1].embed_config.pti == PTIConfig()  # the default steps
    assert cli.invert.steps == InvertConfig.steps and cli.identity_weight == 0.5
