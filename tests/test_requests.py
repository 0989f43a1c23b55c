"""One request per job: the page and the command line build the same job, the options come from the requests,
and every request check is a one-line refusal."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from insetgan.errors import InsetganError
from insetgan.jobs.options import OptionError, flag_name, option_fields, request_from, settings
from insetgan.jobs.network_requests import EditRequest, GenerateRequest, TrainEncoderRequest, TrainRequest
from insetgan.jobs.requests import ComposeRequest, InvertRequest, RefineRequest, SampleBodiesRequest
from tests.cli_run import assert_one_line_error, run
from tests.conftest import REPO, fixture_path

ASTRONAUT = REPO / "tests" / "data" / "astronaut.jpg"
COMMANDS = {"compose": ComposeRequest, "sample-bodies": SampleBodiesRequest, "refine-face": RefineRequest,
            "invert": InvertRequest, "generate": GenerateRequest, "train": TrainRequest, "edit": EditRequest,
            "train-encoder": TrainEncoderRequest}


# --- the page and the command line ---------------------------------------------------------------

def _inline_drive(outputs: list):
    """A stand-in for the page's ``_drive`` that runs the job in this process (no worker) and keeps its output."""
    from insetgan.jobs.progress import silent

    def drive(worker, fn, request, status):
        outputs.append(fn(request, silent))
        return outputs[-1]
        yield  # a generator, like the real one

    return drive


def test_the_page_and_the_command_line_run_the_same_job(tmp_path, monkeypatch):
    """The same selfie, networks, seeds and steps through the page's Compose handler and `insetgan compose`:
    the two reports hold the same request, embedding and optimisation settings."""
    pytest.importorskip("gradio", reason="the app extra is not installed (pip install .[app])")
    from insetgan.app import page as page_module
    from insetgan.app.choices import allowed_networks
    from insetgan.app.page import AppConfig, build_page
    from insetgan.app.runner import Worker

    models = tmp_path / "models"
    models.mkdir()
    body, face = models / "body.pkl", models / "face.pkl"
    shutil.copyfile(fixture_path("sghuman_body64x32.pkl"), body)
    shutil.copyfile(fixture_path("sg2ada_face64.pkl"), face)
    root = tmp_path / "root"
    upload = root / "gradio" / "0123abcd" / "selfie.jpg"
    upload.parent.mkdir(parents=True)
    shutil.copyfile(ASTRONAUT, upload)
    worker = Worker()
    blocks = build_page(AppConfig(device="cpu", invert_steps=3), root, allowed_networks("default", "default", None,
                                                                                          models), worker)
    handler = next(fn.fn for fn in blocks.fns.values() if fn.api_name == "compose")
    outputs: list = []
    monkeypatch.setattr(page_module, "drive", _inline_drive(outputs))
    updates = list(handler({"path": str(upload)}, "", None, None, 0, False, "default", 2, False, "body.pkl",
                           "face.pkl", "none"))
    worker.close()
    assert [u for u in updates if any(str(v).startswith("done") for v in u.values())], updates[-1]
    page = outputs[0].job.report

    selfie = tmp_path / "cli" / "selfie.jpg"
    selfie.parent.mkdir()
    shutil.copyfile(ASTRONAUT, selfie)
    proc = run("--quiet", "compose", "--body", body.resolve(), "--face-net", face.resolve(), "--face", selfie,
               "--body-seed", 0, "--steps", 2, "--invert-steps", 3, "--device", "cpu", "--outdir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    cli = json.loads((tmp_path / "out" / "report.json").read_text())

    def request(report):
        return {k: Path(v).name if k == "face_photo" else v for k, v in report["request"].items()}

    assert request(page) == request(cli)
    assert request(cli)["identity_weight"] == 0.5 and request(cli)["invert_steps"] == 3
    assert page["inputs"]["face_photo"]["config"] == cli["inputs"]["face_photo"]["config"]  # the embedding
    assert page["inputs"]["face_photo"]["photo"]["sha256"] == cli["inputs"]["face_photo"]["photo"]["sha256"]
    assert page["config"] == cli["config"] and page["config"]["inset_weights"]["face_identity"] == 0.5
    assert page["latents"]["body"] == cli["latents"]["body"] == [{"seed": 0}]
    assert Path(page["latents"]["face"]["inverted"]).name == Path(cli["latents"]["face"]["inverted"]).name


def test_the_page_names_options_in_its_own_words_and_drops_what_was_not_given():
    names = {"face_photo": "a selfie", "face_seed": "the face seed"}
    with pytest.raises(OptionError, match="^give either a selfie or the face seed, not both$"):
        request_from(ComposeRequest, {"face_photo": str(ASTRONAUT), "face_seed": "3"}, names)
    with pytest.raises(OptionError, match="^give either --face or --face-seed, not both$"):
        request_from(ComposeRequest, {"face_photo": str(ASTRONAUT), "face_seed": 3})
    with pytest.raises(InsetganError, match="^the face seed must be a whole number, got '1.5'$"):
        request_from(ComposeRequest, {"face_seed": "1.5"}, names)
    with pytest.raises(OptionError, match="^the face seed must be in 0..4294967295, got -1$"):
        request_from(ComposeRequest, {"face_seed": "-1"}, names)
    req = request_from(ComposeRequest, {"face_seed": " ", "body_seed": None, "steps": "12", "trunc": "0.5",
                                        "pti": True})
    assert (req.face_seed, req.body_seed, req.steps, req.trunc, req.pti) == (None, None, 12, 0.5, True)
    assert req.face_source.seed == 0 and req.embed_config.pti.steps == 350
    with pytest.raises(InsetganError, match="unknown option"):
        request_from(ComposeRequest, {"outdir": "x"})
    with pytest.raises(InsetganError, match="^IMAGE is required$"):
        request_from(RefineRequest, {})
    assert request_from(TrainRequest, {"data": "d", "aug": ""}).aug == ""  # an empty policy is a value


def test_a_request_made_with_keywords_checks_itself():
    with pytest.raises(OptionError, match=r"^--steps must be in 1..100000, got 0$"):
        ComposeRequest(steps=0)
    with pytest.raises(OptionError, match=r"^--trunc must be a number in \[-10, 10\], got nan$"):
        ComposeRequest(trunc=float("nan"))
    with pytest.raises(OptionError, match="^--blend must be one of hard, feather, laplacian, got 'soft'$"):
        ComposeRequest(blend="soft")
    with pytest.raises(OptionError, match="^--pti must be true or false$"):
        ComposeRequest(pti="yes")
    with pytest.raises(OptionError, match="^--kimg must be a number in"):
        TrainRequest(data="d", kimg=0.0001)
    req = SampleBodiesRequest(body_seeds="3-5")
    assert [s.seed for s in req.body_sources] == [3, 4, 5]
    assert settings(req)["body_seeds"] == "3-5" and settings(InvertRequest(images=("a.png",), network="n"))[
        "images"] == ["a.png"]
    assert TrainRequest(data="d", z_dim=32).config.w_dim == 32


# --- the command line's options come from the requests ------------------------------------------

def _help_blocks(text: str) -> dict[str, str]:
    """Each option's --help entry (its lines joined), by its first flag."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.split("Options:", 1)[1].splitlines():
        if re.match(r"^  -", line):
            current = line.split()[0].split("/")[0]
            blocks[current] = line
        elif current:
            blocks[current] += " " + line.strip()
    return {k: re.sub(r"\s+", " ", v) for k, v in blocks.items()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_every_request_option_with_its_default(command):
    proc = run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    blocks = _help_blocks(proc.stdout)
    for f, spec in option_fields(COMMANDS[command]):
        if spec.argument:
            assert spec.metavar in proc.stdout.splitlines()[0]
            continue
        flag = flag_name(f.name, spec)
        assert flag in blocks, (command, flag)
        default = spec.shown if f.default is None else f.default
        if f.default is dataclasses.MISSING:
            assert "[required]" in blocks[flag]
        elif isinstance(default, bool):
            assert (f"[default: {flag[2:]}]" in blocks[flag]) == default, blocks[flag]
        elif default not in (None, ()):
            assert f"default: {default}" in blocks[flag], blocks[flag]
        else:  # only the defaults its help text names itself (a repeatable option's default is none given)
            assert blocks[flag].count("[default:") == spec.help.count("[default:"), blocks[flag]
        assert spec.help.split("  [default")[0][:30] in blocks[flag]


# --- every check of a request is one line --------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    (folder / "state.pt").write_bytes(b"x")
    (folder / "face.pkl").write_bytes(b"x")
    return folder


REFUSALS = [
    (["compose", "--face", "{astronaut}", "--face-seed", "3"], "give either --face or --face-seed, not both"),
    (["compose", "--face-seed", "1", "--face-latent", "x.npy"], "give either --face-seed or --face-latent, not both"),
    (["compose", "--body-seed", "1", "--body-latent", "x.npy"], "give either --body-seed or --body-latent, not both"),
    (["compose", "--outfit", "{astronaut}", "--body-seed", "2"], "give either --outfit or --body-seed, not both"),
    (["compose", "--outfit-mask", "{astronaut}"], "--outfit-mask needs --outfit"),
    (["compose", "--pti-steps", "5"], "--pti-steps needs --pti"),
    (["compose", "--face-box", "1,2,x,4"], "--face-box: invalid box"),
    (["compose", "--shoes-box", "1,1,8,8"], "--shoes-box/--shoes-seed need --shoes-net"),
    (["compose", "--face", "{files}/face.pkl"], "--face takes a photo, not a checkpoint"),
    (["compose", "--face", "{files}/none.jpg"], "--face: photo not found"),
    (["sample-bodies", "--num", "3", "--body-seeds", "0-1"], "--num 3 but --body-seeds lists 2 seeds"),
    (["sample-bodies", "--body-seeds", "0-300"], "more than 256 values"),
    (["refine-face", "x.png", "--reference", "{astronaut}", "--face-seed", "3"], "not both"),
    (["refine-face", "x.png", "--face-box", "0,0,10,10,400"], "box angle must be in [-360, 360]"),
    (["invert", "x.png", "--network", "default-face", "--pti-steps", "5"], "--pti-steps needs --mode pti"),
    (["invert", "x.png", "--network", "default-face", "--no-align", "--identity-weight", "0.5"],
     "--identity-weight needs --align"),
    (["generate", "--network", "default-face", "--seeds", "0", "--translate", "1e300,0"],
     "--translate takes two finite numbers"),
    (["generate", "--network", "default-face", "--seeds", "zero"], "invalid seed range"),
    (["train", "--data", "x", "--resume", "{files}/missing.pt"], "--resume: state not found"),
    (["train", "--data", "x", "--resume", "{files}/state.pt", "--init", "default-face"], "exclude each other"),
    (["train", "--data", "x", "--init", "{files}/missing.pkl"], "--init: network not found"),
    (["train", "--data", "x", "--d-warmup-kimg", "1"], "--d-warmup-kimg needs --init"),
    (["train", "--data", "x", "--batch", "6", "--batch-gpu", "4"], "must be a multiple of --batch-gpu 4"),
]


@pytest.mark.parametrize("args, message", REFUSALS, ids=[" ".join(a[:3]) for a, _ in REFUSALS])
def test_each_request_check_is_a_one_line_error(args, message, files, tmp_path):
    args = [a.format(astronaut=ASTRONAUT, files=files) for a in args]
    out = tmp_path / "out"
    proc = run(*args, "--outdir", out)
    assert proc.returncode == 1
    assert_one_line_error(proc, message)
    assert not out.exists()
