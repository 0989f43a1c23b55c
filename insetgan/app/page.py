"""The Gradio page of ``insetgan app``: three tabs, each a thin layer over a job request.

Every tab builds the same request the command line builds (:class:`ComposeRequest`,
:class:`RefineRequest`) and runs it in the worker process of :mod:`insetgan.app.runner`: live
progress in the status line, a Cancel button, a time limit per stage, and the job's files
offered as one zip. Jobs run one at a time (one worker shared by the three tabs); up to
``queue_size`` more wait in Gradio's queue, which tells each its place and turns further
requests away.

The handlers take the raw values a request sends (Gradio's own input checks are off) and
check every one themselves, with the command line's ranges: a request names networks only
from the page's menus (:mod:`insetgan.app.choices`), presets only by name, files only from
the server's upload folder. Every refusal and every failed job is one ``Error: …`` line in
the status line; the server keeps serving. The work folder goes when the server stops.

Nothing is fetched from the internet: analytics are off, the theme uses the system fonts, and
no share link is made.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

from PIL import Image

from insetgan import io as iio
from insetgan.jobs import running as jobs
from insetgan.app.choices import NetworkChoices, allowed_networks
from insetgan.app.runner import Stage, StageLimits, Step, Worker, job_folder, one_line, stage_of, take_upload
from insetgan.devices import torch_device
from insetgan.errors import InsetganError
from insetgan.images import decode_rgb
from insetgan.inversion.invert import InvertConfig
from insetgan.jobs.requests import (ComposeRequest, RefineRequest, RequestOutput, check_seed, embed_config,
                               run_compose_request, run_refine_request, whole_number)

log = logging.getLogger("insetgan")

PRESETS = ("default", "paper", "stylegan-human")
DOWNLOAD_FILES = ("result.png", "compare.png", "latents.npz", "report.json")
PROGRESS_EVERY_S = 0.25  # the status line is refreshed at most this often
UPLOAD_TTL_S = 1800  # Gradio's upload and result cache forgets files after this long
MAX_STEPS = 400  # the Steps sliders' range is 1..MAX_STEPS
MAX_BODIES = 16  # "Many bodies" makes 1..MAX_BODIES bodies
UPLOADS = "gradio"  # the work folder's subfolder for Gradio's uploads and results
JOBS = "jobs"  # the work folder's subfolder for job folders


@dataclass(frozen=True)
class AppConfig:
    """How the page is served and which networks it starts with."""

    host: str = "127.0.0.1"
    port: int = 7860
    body: str = "default"
    face_net: str = "default"
    shoes_net: str | None = None
    device: str = "auto"
    queue_size: int = 4
    max_file_mb: int = 25
    workdir: Path | None = None  # job folders live here (default: a fresh temporary folder per server)
    invert_steps: int = InvertConfig.steps
    models_dir: Path | None = None  # its checkpoint files are offered in the network menus
    limits: StageLimits = field(default_factory=StageLimits)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise InsetganError(f"--port must be in 1..65535, got {self.port}")
        if self.queue_size < 1 or self.max_file_mb < 1 or self.invert_steps < 1:
            raise InsetganError("--queue-size, --max-file-mb and the inversion steps must be >= 1")


def import_gradio() -> Any:
    """Gradio with its analytics off (set before the import), or a one-line install hint."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import gradio
    except ImportError:
        raise InsetganError("insetgan app needs Gradio: pip install 'insetgan[app]'") from None
    return gradio


def _image(data: bytes) -> Image.Image:
    return Image.fromarray(decode_rgb(data, "result image"))


def _zip(out: RequestOutput, folder: Path, name: str) -> str:
    """The job's main files as one zip in the job folder; its path."""
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in DOWNLOAD_FILES:
            if file in out.job.files:
                zf.writestr(file, out.job.files[file])
    return str(path)


def _fmt(v: Any) -> str:
    return "none" if v is None else f"{v:.3f}"


def summary(report: dict[str, Any]) -> str:
    """The headline numbers of a job report as Markdown (first candidate): seam, identity, face, body drift."""
    before, after = report["metrics"]["before"][0], report["metrics"]["after"][0]
    lines = [f"**Seam score**: naive paste {_fmt(before.get('face:seam'))} → result {_fmt(after.get('face:seam'))}"]
    ident = report.get("identity")
    if ident:
        lines.append(f"**Identity distance** to your selfie: {_fmt(ident['before'][0])} → "
                     f"{_fmt(ident['after'][0])} (same person below {ident['same_person_below']})")
    if "face:score" in after:
        lines.append(f"**Face score** (dlib): {_fmt(before.get('face:score'))} → {_fmt(after.get('face:score'))}")
    lines.append(f"**Body drift** (L1): {_fmt(after.get('body_drift_l1'))}")
    if "outfit_l1" in after:
        lines.append(f"**Outfit distance** (L1): {_fmt(before['outfit_l1'])} → {_fmt(after['outfit_l1'])}")
    for warning in report.get("face_check", {}).get("warnings", []):
        lines.append(f"⚠ {warning}")
    return "\n\n".join(lines)


def _drive(worker: Worker, fn: Callable, request: Any, status: Any) -> Generator[dict, None, RequestOutput]:
    """Run a request in the worker, yielding status-line updates (steps throttled); returns its output.

    A stage that reports no steps still yields its name and time every tick, so a client that
    went away is noticed (Gradio then closes this generator, which stops the job).
    """
    gen = worker.run(fn, request)
    last, text, step_stage = 0.0, "", ""
    try:
        while True:
            event: Step | Stage = next(gen)
            now = time.monotonic()
            if isinstance(event, Step):
                step_stage = stage_of(event.desc)
                if now - last < PROGRESS_EVERY_S and event.step != event.total:
                    continue
                text = event.text()
            elif event.name != step_stage:
                text = event.text()
            last = now
            yield {status: text}
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


def _error(text: str) -> str:
    return f"**Error:** {text}"


def _seed(value: object, what: str) -> int | None:
    """A seed from a number box or a text box (None or blank: not given)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return check_seed(value, what)


def _flag(value: object, what: str) -> bool:
    """A checkbox's value (true or false, nothing else)."""
    if not isinstance(value, bool):
        raise InsetganError(f"{what} must be true or false")
    return value


def _preset(value: object) -> str:
    """A preset offered on the page (by name; never a file)."""
    if not (isinstance(value, str) and value in PRESETS):
        raise InsetganError(f"the preset must be one of {', '.join(PRESETS)}")
    return value


def _upload_path(payload: object, name: str) -> str | None:
    """The server path of an upload as a request sends it (a file object), or None when none was given."""
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else None
    if not isinstance(path, str):
        raise InsetganError(f"the uploaded {name} is missing; upload it again")
    return path


def guarded(root: Path, status: Any, body: Callable[..., Generator[dict, None, None]]
            ) -> Callable[..., Generator[dict, None, None]]:
    """A page handler: ``body(folder, *inputs)`` runs in a fresh job folder (removed when it ends);
    every error becomes one line in the status line (a bug's traceback goes to the server's log)."""
    def handler(*inputs: Any) -> Generator[dict, None, None]:
        with job_folder(root) as folder:
            try:
                yield from body(folder, *inputs)
            except (InsetganError, OSError) as exc:
                yield {status: _error(one_line(exc))}
            except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback, one line on the page
                log.exception("the page's handler failed")
                yield {status: _error(f"internal error ({type(exc).__name__}: {one_line(exc)}); "
                                      f"the server log has the details")}

    return handler


def face_input(face_photo: str | None, face_seed: object) -> tuple[str | None, int | None]:
    """The job's face: the uploaded selfie or a seed, exactly one of them."""
    seed = _seed(face_seed, "the face seed")
    if face_photo is None and seed is None:
        raise InsetganError("upload your selfie, or give a face seed")
    if face_photo is not None and seed is not None:
        raise InsetganError("give either a selfie or a face seed, not both")
    return face_photo, seed


def build_page(cfg: AppConfig, root: Path, nets: NetworkChoices, worker: Worker) -> Any:
    """The Gradio Blocks of the app (not yet launched).

    Job folders are made under ``root / JOBS``; uploads are taken only from ``root / UPLOADS``;
    jobs run in ``worker``; the network menus offer ``nets``.
    """
    gr = import_gradio()
    uploads, root = root / UPLOADS, root / JOBS
    embed = embed_config(cfg.invert_steps)
    # One worker for the three tabs; the handlers check the raw request values themselves (see the module doc).
    worker_opts = {"concurrency_limit": 1, "concurrency_id": "worker", "preprocess": False}

    def upload(payload: object, folder: Path, name: str) -> str | None:
        return take_upload(_upload_path(payload, name), folder, name, uploads)

    def steps_of(value: object) -> int:
        return whole_number(value, "steps", 1, MAX_STEPS)

    def menu(role: str, label: str, elem_id: str | None = None) -> Any:
        names = nets.names(role)
        return gr.Dropdown(names, value=names[0], label=label, elem_id=elem_id)

    def networks(tab: str, shoes: bool) -> tuple[Any, ...]:
        with gr.Accordion("Networks (the models this server offers)", open=False):
            menus = (menu("body", "Body (canvas)", f"{tab}-body-net"), menu("face", "Face", f"{tab}-face-net"))
            if shoes:
                menus += (menu("shoes", "Shoes (optional)", f"{tab}-shoes-net"),)
        return menus

    def device() -> Any:
        return torch_device(cfg.device)

    with gr.Blocks(title="insetgan", analytics_enabled=False, delete_cache=(300, UPLOAD_TTL_S)) as page:
        gr.Markdown("# insetgan\nA full-body picture of you: drop a selfie, get a body. Everything runs on this "
                    "machine.")
        with gr.Tab("Compose"):
            with gr.Row():
                with gr.Column():
                    c_selfie = gr.File(label="Your selfie", file_types=["image"], type="filepath", elem_id="c-selfie")
                    c_face_seed = gr.Textbox("", label="…or a face seed (no selfie)", elem_id="c-face-seed")
                    c_outfit = gr.File(label="Outfit photo (optional, full body)", file_types=["image"],
                                       type="filepath")
                    c_mask = gr.File(label="Outfit mask (optional)", file_types=["image"], type="filepath")
                    with gr.Row():
                        c_body_seed = gr.Number(0, label="Body seed", precision=0)
                        c_random = gr.Checkbox(False, label="Random body")
                    c_preset = gr.Dropdown(list(PRESETS), value="default", label="Preset")
                    c_steps = gr.Slider(1, MAX_STEPS, value=30, step=1, label="Steps", elem_id="c-steps")
                    c_pti = gr.Checkbox(False, label="Pivotal tuning (sharper, slower)")
                    c_nets = networks("c", shoes=True)
                    with gr.Row():
                        c_run = gr.Button("Compose", variant="primary", elem_id="c-run")
                        c_cancel = gr.Button("Cancel", elem_id="c-cancel")
                with gr.Column():
                    c_status = gr.Markdown("", elem_id="c-status")
                    c_result = gr.Image(label="Result", type="pil", interactive=False, elem_id="c-result")
                    c_compare = gr.Image(label="Start │ naive paste │ result", type="pil", interactive=False)
                    with gr.Row():
                        c_face0 = gr.Image(label="Face before", type="pil", interactive=False)
                        c_face1 = gr.Image(label="Face after", type="pil", interactive=False)
                    c_metrics = gr.Markdown("", elem_id="c-metrics")
                    c_files = gr.File(label="result.png, compare.png, latents.npz, report.json", interactive=False,
                                      elem_id="c-files")

        def compose(folder, selfie, face_seed, outfit, mask, body_seed, random_body, preset, steps, pti, body,
                    face_net, shoes_net):
            req_args = dict(body=nets.resolve("body", body), face_net=nets.resolve("face", face_net),
                            shoes_net=nets.resolve("shoes", shoes_net), preset=_preset(preset), steps=steps_of(steps))
            pti, random_body = _flag(pti, "pivotal tuning"), _flag(random_body, "random body")
            bseed = random.randrange(iio.MAX_SEED + 1) if random_body else _seed(body_seed, "the body seed") or 0
            face_photo, fseed = face_input(upload(selfie, folder, "selfie"), face_seed)
            outfit_photo = upload(outfit, folder, "outfit")
            mask_img = upload(mask, folder, "mask")
            if mask_img is not None and outfit_photo is None:
                raise InsetganError("the outfit mask needs an outfit photo")
            req = ComposeRequest(
                command="compose", **req_args, body_sources=(jobs.LatentSource(seed=bseed),),
                face_source=jobs.LatentSource(seed=fseed or 0, key="face"), device=device(),
                cache_dir=folder / "cache", face_photo=face_photo, outfit=outfit_photo, outfit_mask=mask_img,
                embed=embed_config(cfg.invert_steps, pti))
            yield {c_status: "starting…", c_metrics: "", c_files: None}
            out = yield from _drive(worker, run_compose_request, req, c_status)
            files = out.job.files
            body_note = f" (body seed {bseed})" if outfit_photo is None else ""
            yield {c_status: f"done in {out.job.report['timings_s']['optimize']:.1f} s{body_note}",
                   c_result: _image(files["result.png"]), c_compare: _image(files["compare.png"]),
                   c_face0: _image(files["face_start.png"]), c_face1: _image(files["face.png"]),
                   c_metrics: summary(out.job.report), c_files: _zip(out, folder, "insetgan-compose.zip")}

        c_inputs = [c_selfie, c_face_seed, c_outfit, c_mask, c_body_seed, c_random, c_preset, c_steps, c_pti, *c_nets]
        c_outputs = [c_status, c_result, c_compare, c_face0, c_face1, c_metrics, c_files]
        c_event = c_run.click(guarded(root, c_status, compose), c_inputs, c_outputs, api_name="compose", **worker_opts)
        c_cancel.click(None, None, None, cancels=[c_event])

        with gr.Tab("Many bodies"):
            with gr.Row():
                with gr.Column():
                    m_selfie = gr.File(label="Your selfie", file_types=["image"], type="filepath")
                    m_face_seed = gr.Textbox("", label="…or a face seed (no selfie)")
                    m_count = gr.Slider(1, MAX_BODIES, value=4, step=1, label="How many bodies")
                    m_first = gr.Number(0, label="First body seed", precision=0)
                    m_steps = gr.Slider(1, MAX_STEPS, value=30, step=1, label="Steps")
                    m_nets = networks("m", shoes=False)
                    with gr.Row():
                        m_run = gr.Button("Make bodies", variant="primary", elem_id="m-run")
                        m_cancel = gr.Button("Cancel")
                with gr.Column():
                    m_status = gr.Markdown("", elem_id="m-status")
                    m_grid = gr.Image(label="All bodies", type="pil", interactive=False)
                    m_gallery = gr.Gallery(label="Each body", columns=4, elem_id="m-gallery")
                    m_files = gr.File(label="result.png, compare.png, latents.npz, report.json", interactive=False)

        def many(folder, selfie, face_seed, count, first, steps, body, face_net):
            count = whole_number(count, "the number of bodies", 1, MAX_BODIES)
            start = _seed(first, "the first body seed") or 0
            seeds = iio.parse_range(f"{start}-{start + count - 1}", "body seed")  # --body-seeds' check
            req_args = dict(body=nets.resolve("body", body), face_net=nets.resolve("face", face_net),
                            steps=steps_of(steps))
            face_photo, fseed = face_input(upload(selfie, folder, "selfie"), face_seed)
            req = ComposeRequest(
                command="sample-bodies", **req_args, body_sources=tuple(jobs.LatentSource(seed=s) for s in seeds),
                face_source=jobs.LatentSource(seed=fseed or 0, key="face"), device=device(),
                cache_dir=folder / "cache", keep_face=True, face_photo=face_photo, embed=embed)
            yield {m_status: "starting…", m_files: None}
            out = yield from _drive(worker, run_compose_request, req, m_status)
            files = out.job.files
            each = [_image(files[f"result_{i:03d}.png"]) for i in range(count)
                    if f"result_{i:03d}.png" in files] or [_image(files["result.png"])]
            yield {m_status: f"{len(each)} bodies in {out.job.report['timings_s']['optimize']:.1f} s",
                   m_grid: _image(files["result.png"]), m_gallery: each,
                   m_files: _zip(out, folder, "insetgan-bodies.zip")}

        m_inputs = [m_selfie, m_face_seed, m_count, m_first, m_steps, *m_nets]
        m_event = m_run.click(guarded(root, m_status, many), m_inputs,
                              [m_status, m_grid, m_gallery, m_files], api_name="many", **worker_opts)
        m_cancel.click(None, None, None, cancels=[m_event])

        with gr.Tab("Fix a face"):
            with gr.Row():
                with gr.Column():
                    f_photo = gr.File(label="A photo with a face", file_types=["image"], type="filepath")
                    f_reference = gr.File(label="Your selfie (optional: the face becomes yours)",
                                          file_types=["image"], type="filepath")
                    f_steps = gr.Slider(1, MAX_STEPS, value=30, step=1, label="Steps")
                    f_keep = gr.Checkbox(True, label="Keep the original face if the result is worse")
                    f_face = menu("face", "Face network", "f-face-net")
                    with gr.Row():
                        f_run = gr.Button("Fix the face", variant="primary", elem_id="f-run")
                        f_cancel = gr.Button("Cancel")
                with gr.Column():
                    f_status = gr.Markdown("", elem_id="f-status")
                    f_result = gr.Image(label="Refined photo", type="pil", interactive=False)
                    f_compare = gr.Image(label="Start │ naive paste │ result", type="pil", interactive=False)
                    f_metrics = gr.Markdown("")
                    f_files = gr.File(label="result.png, compare.png, latents.npz, report.json", interactive=False)

        def fix(folder, photo, reference, steps, keep, face_net):
            face_spec, n_steps = nets.resolve("face", face_net), steps_of(steps)
            keep = _flag(keep, "keep the original face")
            image = upload(photo, folder, "photo")
            if image is None:
                raise InsetganError("upload a photo with a face")
            req = RefineRequest(image=image, face_net=face_spec, reference=upload(reference, folder, "reference"),
                                steps=n_steps, device=device(), cache_dir=folder / "cache", embed=embed,
                                keep_best=keep)
            yield {f_status: "starting…", f_files: None}
            out = yield from _drive(worker, run_refine_request, req, f_status)
            files = out.job.files
            yield {f_status: f"done in {out.job.report['timings_s']['optimize']:.1f} s",
                   f_result: _image(files["result.png"]), f_compare: _image(files["compare.png"]),
                   f_metrics: summary(out.job.report), f_files: _zip(out, folder, "insetgan-face.zip")}

        f_event = f_run.click(guarded(root, f_status, fix), [f_photo, f_reference, f_steps, f_keep, f_face],
                              [f_status, f_result, f_compare, f_metrics, f_files], api_name="fix", **worker_opts)
        f_cancel.click(None, None, None, cancels=[f_event])
    page.queue(max_size=cfg.queue_size, default_concurrency_limit=1)
    return page


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event that Ctrl-C (SIGINT), SIGTERM and SIGHUP set while the server runs (handlers restored after).

    The handlers only set the event: an exception raised from a signal handler could land in any
    code of the server (a finaliser swallows it) and be lost.
    """
    stop = threading.Event()
    caught = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    before = {s: signal.signal(s, lambda signum, frame: stop.set()) for s in caught}
    try:
        yield stop
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def remove_work(root: Path, temporary: bool) -> None:
    """Remove what the server kept: the whole work folder when it made it, else its uploads and job folders."""
    for path in [root] if temporary else [root / UPLOADS, root / JOBS]:
        shutil.rmtree(path, ignore_errors=True)


def serve(cfg: AppConfig) -> None:
    """Serve the page on ``cfg.host:cfg.port`` until Ctrl-C, SIGTERM or SIGHUP; then remove the work folder.

    The network menus are checked first (a missing ``--body`` file is an error before anything
    starts). Uploads, results and zips live in the work folder: a fresh temporary folder that
    is removed on the way out, or ``cfg.workdir``, whose upload and job subfolders are.
    """
    nets = allowed_networks(cfg.body, cfg.face_net, cfg.shoes_net, cfg.models_dir)
    temporary = cfg.workdir is None
    root = Path(tempfile.mkdtemp(prefix="insetgan-app-")) if temporary else cfg.workdir
    worker = Worker(cfg.limits, preload=("insetgan.jobs.requests",))
    with stop_signals() as stop:
        try:
            root.mkdir(parents=True, exist_ok=True)
            os.environ["GRADIO_TEMP_DIR"] = str(root / UPLOADS)  # uploads and results stay in the work folder
            gr = import_gradio()
            worker.start()
            page = build_page(cfg, root, nets, worker)
            theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                      font_mono=["ui-monospace", "monospace"])
            try:
                page.launch(server_name=cfg.host, server_port=cfg.port, share=False, inbrowser=False, quiet=True,
                            max_file_size=f"{cfg.max_file_mb}mb", prevent_thread_lock=True, theme=theme,
                            show_error=True, footer_links=[], ssr_mode=False)
                log.info("serving on http://%s:%d (Ctrl-C stops)", cfg.host, cfg.port)
                while page.is_running and not stop.wait(0.2):
                    pass
                log.info("stopping the server")
            finally:
                page.close()
        finally:
            worker.close()
            remove_work(root, temporary)
