"""The Gradio page of ``insetgan app``: three tabs, each a thin layer over a job request.

Every tab builds the request the command line builds (:class:`ComposeRequest`,
:class:`SampleBodiesRequest`, :class:`RefineRequest`) through the same constructor
(:func:`insetgan.jobs.options.request_from`, the page's own words naming the options in its
messages) and runs it in the worker process of :mod:`insetgan.app.runner`: live
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
import functools
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

from PIL import Image

from insetgan.app.choices import NetworkChoices, allowed_networks
from insetgan.app.edits import DirectionChoices, allowed_directions, edit_controls
from insetgan.app.runner import StageLimits, Worker, drive, job_folder, one_line, take_upload
from insetgan.errors import InsetganError
from insetgan.images import decode_rgb
from insetgan.jobs.compose import run_compose
from insetgan.jobs.options import flag_value, request_from, unset, whole_number
from insetgan.jobs.refine import run_refine
from insetgan.jobs.report import RequestOutput, summary
from insetgan.jobs.requests import ComposeRequest, RefineRequest, SampleBodiesRequest
from insetgan.limits import MAX_SEED
from insetgan.method.config import PRESETS

log = logging.getLogger("insetgan")

DOWNLOAD_FILES = ("result.png", "compare.png", "latents.npz", "report.json")
UPLOAD_TTL_S = 1800  # Gradio's upload and result cache forgets files after this long
MAX_STEPS = 400  # the Steps sliders' range is 1..MAX_STEPS
MAX_BODIES = 16  # "Many bodies" makes 1..MAX_BODIES bodies
UPLOADS = "gradio"  # the work folder's subfolder for Gradio's uploads and results
JOBS = "jobs"  # the work folder's subfolder for job folders
FILES_LABEL = "result.png, compare.png, latents.npz, report.json"
COMPOSE_INPUTS = ("selfie", "face_seed", "outfit", "mask", "body_seed", "random_body", "preset", "steps", "pti",
                  "body", "face_net", "shoes_net")
NAMES = {"face_seed": "the face seed", "body_seed": "the body seed", "face_photo": "a selfie", "pti": "pivotal tuning",
         "outfit": "an outfit photo", "outfit_mask": "the outfit mask", "reference": "your selfie",
         "image": "the photo", "keep_best": "keep the original face", "steps": "steps",
         "edits": "the body edits"}  # the page's words


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
    invert_steps: int | None = None  # None: the request's default (fewer after an encoder's start)
    models_dir: Path | None = None  # its checkpoint files are offered in the network menus
    directions: tuple[str, ...] = ()  # direction files (FILE[:NAME][@ROWS][%T]) offered in the edit menus
    limits: StageLimits = field(default_factory=StageLimits)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise InsetganError(f"--port must be in 1..65535, got {self.port}")
        if self.queue_size < 1 or self.max_file_mb < 1 or (self.invert_steps is not None and self.invert_steps < 1):
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


def _error(text: str) -> str:
    return f"**Error:** {text}"


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


@dataclass(frozen=True)
class Page:
    """What the page's tabs share: the server's settings, the networks and edits offered, the job worker and
    the work folder's job and upload subfolders."""

    cfg: AppConfig
    nets: NetworkChoices
    worker: Worker
    jobs: Path
    uploads: Path
    dirs: DirectionChoices = DirectionChoices()

    def upload(self, payload: object, folder: Path, name: str) -> str | None:
        """The job folder's copy of an upload (None when none was given)."""
        return take_upload(_upload_path(payload, name), folder, name, self.uploads)

    def request(self, request_type: type, folder: Path, **options: object) -> Any:
        """A job request from the page's values, on this server's device and inversion steps; its
        inversion cache lives in the job folder."""
        return request_from(request_type, {"device": self.cfg.device, "invert_steps": self.cfg.invert_steps,
                                           **options}, NAMES)

    def run(self, fn: Callable[..., RequestOutput], request: Any, folder: Path, status: Any,
            cleared: dict) -> Generator[dict, None, RequestOutput]:
        """Run a request's job in the worker (its inversion cache in the job folder), showing its progress;
        the ``cleared`` outputs are emptied as it starts."""
        yield {status: "starting…", **cleared}
        return (yield from drive(self.worker, functools.partial(fn, cache_dir=folder / "cache"), request, status))

    def menu(self, gr: Any, role: str, label: str, elem_id: str | None = None) -> Any:
        """A dropdown of the networks offered for ``role``, the preselected one first."""
        names = self.nets.names(role)
        return gr.Dropdown(names, value=names[0], label=label, elem_id=elem_id)

    def networks(self, gr: Any, tab: str, shoes: bool) -> tuple[Any, ...]:
        """The body and face (and shoes) menus of a tab, folded away."""
        with gr.Accordion("Networks (the models this server offers)", open=False):
            menus = (self.menu(gr, "body", "Body (canvas)", f"{tab}-body-net"),
                     self.menu(gr, "face", "Face", f"{tab}-face-net"))
            if shoes:
                menus += (self.menu(gr, "shoes", "Shoes (optional)", f"{tab}-shoes-net"),)
        return menus

    def wire(self, run: Any, cancel: Any, handler: Callable, inputs: list, outputs: list, status: Any,
             api_name: str) -> None:
        """Run ``handler`` in the worker on Run (one job at a time, raw request values); Cancel stops it."""
        event = run.click(guarded(self.jobs, status, handler), inputs, outputs, api_name=api_name,
                          concurrency_limit=1, concurrency_id="worker", preprocess=False)
        cancel.click(None, None, None, cancels=[event])


def buttons(gr: Any, label: str, tab: str) -> tuple[Any, Any]:
    """A tab's Run and Cancel buttons (``{tab}-run``, ``{tab}-cancel``)."""
    with gr.Row():
        return gr.Button(label, variant="primary", elem_id=f"{tab}-run"), gr.Button("Cancel", elem_id=f"{tab}-cancel")


def steps_of(value: object) -> int:
    """The steps of a job as the page's sliders offer them."""
    return whole_number(value, "steps", 1, MAX_STEPS)


def compose_tab(gr: Any, page: Page) -> None:
    """The Compose tab: a selfie (or a face seed), an optional outfit, one body."""
    with gr.Tab("Compose"), gr.Row():
        with gr.Column():
            selfie = gr.File(label="Your selfie", file_types=["image"], type="filepath", elem_id="c-selfie")
            face_seed = gr.Textbox("", label="…or a face seed (no selfie)", elem_id="c-face-seed")
            outfit = gr.File(label="Outfit photo (optional, full body)", file_types=["image"], type="filepath")
            mask = gr.File(label="Outfit mask (optional)", file_types=["image"], type="filepath")
            with gr.Row():
                body_seed = gr.Number(0, label="Body seed", precision=0)
                random_body = gr.Checkbox(False, label="Random body")
            preset = gr.Dropdown(list(PRESETS), value="default", label="Preset")
            steps = gr.Slider(1, MAX_STEPS, value=30, step=1, label="Steps", elem_id="c-steps")
            pti = gr.Checkbox(False, label="Pivotal tuning (sharper, slower)")
            nets = page.networks(gr, "c", shoes=True)
            edits = edit_controls(gr, page.dirs, "c", nets[0])
            run, cancel = buttons(gr, "Compose", "c")
        with gr.Column():
            status = gr.Markdown("", elem_id="c-status")
            result = gr.Image(label="Result", type="pil", interactive=False, elem_id="c-result")
            compare = gr.Image(label="Start │ naive paste │ result", type="pil", interactive=False)
            with gr.Row():
                face0 = gr.Image(label="Face before", type="pil", interactive=False)
                face1 = gr.Image(label="Face after", type="pil", interactive=False)
            metrics = gr.Markdown("", elem_id="c-metrics")
            files = gr.File(label=FILES_LABEL, interactive=False, elem_id="c-files")

    def compose(folder: Path, *values: object) -> Generator[dict, None, None]:
        v = dict(zip(COMPOSE_INPUTS, values))
        nets = {"body": page.nets.resolve("body", v["body"]), "face_net": page.nets.resolve("face", v["face_net"]),
                "shoes_net": page.nets.resolve("shoes", v["shoes_net"])}
        preset, n_steps = _preset(v["preset"]), steps_of(v["steps"])
        random_seed = flag_value(v["random_body"], "random body")
        body_seed = random.randrange(MAX_SEED + 1) if random_seed else v["body_seed"]
        face_photo = page.upload(v["selfie"], folder, "selfie")
        if face_photo is None and unset(v["face_seed"]):
            raise InsetganError("upload your selfie, or give a face seed")
        req = page.request(ComposeRequest, folder, **nets, preset=preset, steps=n_steps, pti=v["pti"],
                           edits=page.dirs.specs(v["body"], values[len(COMPOSE_INPUTS):]),
                           body_seed=body_seed, face_seed=v["face_seed"], face_photo=face_photo,
                           outfit=page.upload(v["outfit"], folder, "outfit"),
                           outfit_mask=page.upload(v["mask"], folder, "mask"))
        out = yield from page.run(run_compose, req, folder, status, {metrics: "", files: None})
        made = out.job.files
        body_note = f" (body seed {req.body_sources[0].seed})" if req.outfit is None else ""
        yield {status: f"done in {out.job.report['timings_s']['optimize']:.1f} s{body_note}",
               result: _image(made["result.png"]), compare: _image(made["compare.png"]),
               face0: _image(made["face_start.png"]), face1: _image(made["face.png"]),
               metrics: summary(out.job.report, markdown=True), files: _zip(out, folder, "insetgan-compose.zip")}

    inputs = [selfie, face_seed, outfit, mask, body_seed, random_body, preset, steps, pti, *nets, *edits]
    page.wire(run, cancel, compose, inputs,
              [status, result, compare, face0, face1, metrics, files], status, "compose")


def many_tab(gr: Any, page: Page) -> None:
    """The Many bodies tab: one face on several bodies, optimised together."""
    with gr.Tab("Many bodies"), gr.Row():
        with gr.Column():
            selfie = gr.File(label="Your selfie", file_types=["image"], type="filepath")
            face_seed = gr.Textbox("", label="…or a face seed (no selfie)")
            count = gr.Slider(1, MAX_BODIES, value=4, step=1, label="How many bodies")
            first = gr.Number(0, label="First body seed", precision=0)
            steps = gr.Slider(1, MAX_STEPS, value=30, step=1, label="Steps")
            nets = page.networks(gr, "m", shoes=False)
            edits = edit_controls(gr, page.dirs, "m", nets[0])
            run, cancel = buttons(gr, "Make bodies", "m")
        with gr.Column():
            status = gr.Markdown("", elem_id="m-status")
            grid = gr.Image(label="All bodies", type="pil", interactive=False)
            gallery = gr.Gallery(label="Each body", columns=4, elem_id="m-gallery")
            files = gr.File(label=FILES_LABEL, interactive=False)

    def many(folder: Path, selfie_in: object, seed: object, n: object, start: object, n_steps: object,
             body: object, face_net: object, *edit_values: object) -> Generator[dict, None, None]:
        n = whole_number(n, "the number of bodies", 1, MAX_BODIES)
        start = 0 if unset(start) else whole_number(start, "the first body seed", 0, MAX_SEED)
        nets = {"body": page.nets.resolve("body", body), "face_net": page.nets.resolve("face", face_net)}
        face_photo = page.upload(selfie_in, folder, "selfie")
        if face_photo is None and unset(seed):
            raise InsetganError("upload your selfie, or give a face seed")
        req = page.request(SampleBodiesRequest, folder, **nets, steps=steps_of(n_steps), face_seed=seed,
                           face_photo=face_photo, body_seeds=f"{start}-{start + n - 1}",
                           edits=page.dirs.specs(str(body), edit_values))
        out = yield from page.run(run_compose, req, folder, status, {files: None})
        made = out.job.files
        each = [_image(made[f"result_{i:03d}.png"]) for i in range(n)
                if f"result_{i:03d}.png" in made] or [_image(made["result.png"])]
        yield {status: f"{len(each)} bodies in {out.job.report['timings_s']['optimize']:.1f} s",
               grid: _image(made["result.png"]), gallery: each, files: _zip(out, folder, "insetgan-bodies.zip")}

    page.wire(run, cancel, many, [selfie, face_seed, count, first, steps, *nets, *edits],
              [status, grid, gallery, files], status, "many")


def fix_tab(gr: Any, page: Page) -> None:
    """The Fix a face tab: the face of a photo refined, or replaced by the user's."""
    with gr.Tab("Fix a face"), gr.Row():
        with gr.Column():
            photo = gr.File(label="A photo with a face", file_types=["image"], type="filepath")
            reference = gr.File(label="Your selfie (optional: the face becomes yours)", file_types=["image"],
                                type="filepath")
            steps = gr.Slider(1, MAX_STEPS, value=30, step=1, label="Steps")
            keep = gr.Checkbox(True, label="Keep the original face if the result is worse")
            face_net = page.menu(gr, "face", "Face network", "f-face-net")
            run, cancel = buttons(gr, "Fix the face", "f")
        with gr.Column():
            status = gr.Markdown("", elem_id="f-status")
            result = gr.Image(label="Refined photo", type="pil", interactive=False)
            compare = gr.Image(label="Start │ naive paste │ result", type="pil", interactive=False)
            metrics = gr.Markdown("")
            files = gr.File(label=FILES_LABEL, interactive=False)

    def fix(folder: Path, photo_in: object, reference_in: object, n_steps: object, keep_best: object,
            face: object) -> Generator[dict, None, None]:
        face_spec, n_steps = page.nets.resolve("face", face), steps_of(n_steps)
        image = page.upload(photo_in, folder, "photo")
        if image is None:
            raise InsetganError("upload a photo with a face")
        req = page.request(RefineRequest, folder, image=image, face_net=face_spec, steps=n_steps, keep_best=keep_best,
                           reference=page.upload(reference_in, folder, "reference"))
        out = yield from page.run(run_refine, req, folder, status, {files: None})
        made = out.job.files
        yield {status: f"done in {out.job.report['timings_s']['optimize']:.1f} s",
               result: _image(made["result.png"]), compare: _image(made["compare.png"]),
               metrics: summary(out.job.report, markdown=True), files: _zip(out, folder, "insetgan-face.zip")}

    page.wire(run, cancel, fix, [photo, reference, steps, keep, face_net], [status, result, compare, metrics, files],
              status, "fix")


def build_page(cfg: AppConfig, root: Path, nets: NetworkChoices, worker: Worker,
               dirs: DirectionChoices | None = None) -> Any:
    """The Gradio Blocks of the app (not yet launched).

    Job folders are made under ``root / JOBS``; uploads are taken only from ``root / UPLOADS``;
    jobs run in ``worker`` (one at a time, the three tabs sharing it); the network menus offer ``nets``,
    the edit controls ``dirs`` (default: those of ``cfg.directions`` and ``nets``).
    """
    gr = import_gradio()
    dirs = dirs if dirs is not None else allowed_directions(cfg.directions, nets.body)
    page = Page(cfg, nets, worker, root / JOBS, root / UPLOADS, dirs)
    with gr.Blocks(title="insetgan", analytics_enabled=False, delete_cache=(300, UPLOAD_TTL_S)) as blocks:
        gr.Markdown("# insetgan\nA full-body picture of you: drop a selfie, get a body. Everything runs on this "
                    "machine.")
        compose_tab(gr, page)
        many_tab(gr, page)
        fix_tab(gr, page)
    blocks.queue(max_size=cfg.queue_size, default_concurrency_limit=1)
    return blocks


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
    dirs = allowed_directions(cfg.directions, nets.body)
    temporary = cfg.workdir is None
    root = Path(tempfile.mkdtemp(prefix="insetgan-app-")) if temporary else cfg.workdir
    worker = Worker(cfg.limits, preload=("insetgan.jobs.compose", "insetgan.jobs.refine"))
    with stop_signals() as stop:
        try:
            root.mkdir(parents=True, exist_ok=True)
            os.environ["GRADIO_TEMP_DIR"] = str(root / UPLOADS)  # uploads and results stay in the work folder
            gr = import_gradio()
            worker.start()
            page = build_page(cfg, root, nets, worker, dirs)
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
