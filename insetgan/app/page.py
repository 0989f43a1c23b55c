"""The Gradio page of ``insetgan app``: three tabs, each a thin layer over a job request.

Every tab builds the same request the command line builds (:class:`ComposeRequest`,
:class:`RefineRequest`) and runs it through :func:`insetgan.app.runner.run_job`: live progress
in the status line, a Cancel button, and the job's files offered as one zip. Jobs run one at a
time (one worker shared by the three tabs); up to ``queue_size`` more wait in Gradio's queue,
which tells each its place and turns further requests away. Bad input (not an image, no face,
an oversized image, a checkpoint that does not load) is shown as a one-line message on the
page; the server keeps serving.

Nothing is fetched from the internet: analytics are off, the theme uses the system fonts, and
no share link is made.
"""
from __future__ import annotations

import io
import os
import random
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator

from PIL import Image

from insetgan import io as iio
from insetgan import jobs
from insetgan.app.runner import JobCancelled, Step, job_folder, run_job, take_upload
from insetgan.embedding import EmbedConfig
from insetgan.errors import InsetganError
from insetgan.invert import InvertConfig, PTIConfig
from insetgan.requests import (ComposeRequest, RefineRequest, RequestOutput, run_compose_request,
                               run_refine_request)

PRESETS = ("default", "paper", "stylegan-human")
DOWNLOAD_FILES = ("result.png", "compare.png", "latents.npz", "report.json")
PROGRESS_EVERY_S = 0.25  # the status line is refreshed at most this often
UPLOAD_TTL_S = 1800  # Gradio's upload and result cache forgets files after this long


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


def _device(name: str) -> Any:
    from insetgan.cli.common import torch_device

    return torch_device(name)


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


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


def _drive(fn: Callable, request: Any, status: Any) -> Generator[dict, None, RequestOutput]:
    """Run a request, yielding status-line updates (throttled); returns its output."""
    gen = run_job(fn, request)
    last = 0.0
    try:
        while True:
            step: Step = next(gen)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S or step.step == step.total:
                last = now
                yield {status: step.text()}
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


def _error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"**Error:** {text}"


def _seed(value: float | str | None, what: str) -> int | None:
    """A seed from a number box or a text box ('' or None: not given)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except ValueError:
        raise InsetganError(f"{what} must be a whole number, got {value!r}") from None
    if number != int(number) or not 0 <= number <= iio.MAX_SEED:
        raise InsetganError(f"{what} must be a whole number in 0..{iio.MAX_SEED}")
    return int(number)


def guarded(root: Path, status: Any, body: Callable[..., Generator[dict, None, None]]
            ) -> Callable[..., Generator[dict, None, None]]:
    """A page handler: ``body(folder, *inputs)`` runs in a fresh job folder (removed when it ends);
    a cancelled job and bad input become the status line."""
    def handler(*inputs: Any) -> Generator[dict, None, None]:
        with job_folder(root) as folder:
            try:
                yield from body(folder, *inputs)
            except JobCancelled:
                yield {status: "cancelled"}
            except (InsetganError, OSError) as exc:
                yield {status: _error(exc)}

    return handler


def face_input(selfie: str | None, face_seed: str | None, folder: Path) -> tuple[str | None, int | None]:
    """The job's face: the uploaded selfie (copied into ``folder``) or a seed, exactly one of them."""
    face_photo = take_upload(selfie, folder, "selfie")
    seed = _seed(face_seed, "the face seed")
    if face_photo is None and seed is None:
        raise InsetganError("upload your selfie, or give a face seed")
    if face_photo is not None and seed is not None:
        raise InsetganError("give either a selfie or a face seed, not both")
    return face_photo, seed


def build_page(cfg: AppConfig, root: Path) -> Any:
    """The Gradio Blocks of the app (not yet launched); job folders are made under ``root / "jobs"``."""
    gr = import_gradio()
    root = root / "jobs"
    embed = EmbedConfig(InvertConfig(mode="wplus", steps=cfg.invert_steps))
    worker = {"concurrency_limit": 1, "concurrency_id": "worker"}

    def networks() -> tuple[Any, Any, Any]:
        with gr.Accordion("Networks (a checkpoint path, or a built-in model name)", open=False):
            body = gr.Textbox(cfg.body, label="Body (canvas)", elem_id="body-net")
            face = gr.Textbox(cfg.face_net, label="Face", elem_id="face-net")
            shoes = gr.Textbox(cfg.shoes_net or "", label="Shoes (optional)", elem_id="shoes-net")
        return body, face, shoes

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
                    c_steps = gr.Slider(1, 400, value=30, step=1, label="Steps", elem_id="c-steps")
                    c_pti = gr.Checkbox(False, label="Pivotal tuning (sharper, slower)")
                    c_nets = networks()
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
            face_photo, fseed = face_input(selfie, face_seed, folder)
            outfit_photo = take_upload(outfit, folder, "outfit")
            mask_img = take_upload(mask, folder, "mask")
            if mask_img is not None and outfit_photo is None:
                raise InsetganError("the outfit mask needs an outfit photo")
            bseed = random.randrange(iio.MAX_SEED + 1) if random_body else _seed(body_seed, "the body seed") or 0
            req = ComposeRequest(
                command="compose", body=body or "default", face_net=face_net or "default", shoes_net=shoes_net or None,
                body_sources=(jobs.LatentSource(seed=bseed),),
                face_source=jobs.LatentSource(seed=fseed or 0, key="face"), preset=preset, steps=int(steps),
                device=_device(cfg.device), cache_dir=folder / "cache", face_photo=face_photo,
                outfit=outfit_photo, outfit_mask=mask_img,
                embed=EmbedConfig(embed.invert, PTIConfig() if pti else None, embed.identity_weight))
            yield {c_status: "starting…", c_metrics: "", c_files: None}
            out = yield from _drive(run_compose_request, req, c_status)
            files = out.job.files
            body_note = f" (body seed {bseed})" if outfit_photo is None else ""
            yield {c_status: f"done in {out.job.report['timings_s']['optimize']:.1f} s{body_note}",
                   c_result: _image(files["result.png"]), c_compare: _image(files["compare.png"]),
                   c_face0: _image(files["face_start.png"]), c_face1: _image(files["face.png"]),
                   c_metrics: summary(out.job.report), c_files: _zip(out, folder, "insetgan-compose.zip")}

        c_inputs = [c_selfie, c_face_seed, c_outfit, c_mask, c_body_seed, c_random, c_preset, c_steps, c_pti, *c_nets]
        c_outputs = [c_status, c_result, c_compare, c_face0, c_face1, c_metrics, c_files]
        c_event = c_run.click(guarded(root, c_status, compose), c_inputs, c_outputs, api_name="compose", **worker)
        c_cancel.click(None, None, None, cancels=[c_event])

        with gr.Tab("Many bodies"):
            with gr.Row():
                with gr.Column():
                    m_selfie = gr.File(label="Your selfie", file_types=["image"], type="filepath")
                    m_face_seed = gr.Textbox("", label="…or a face seed (no selfie)")
                    m_count = gr.Slider(1, 16, value=4, step=1, label="How many bodies")
                    m_first = gr.Number(0, label="First body seed", precision=0)
                    m_steps = gr.Slider(1, 400, value=30, step=1, label="Steps")
                    m_nets = networks()
                    with gr.Row():
                        m_run = gr.Button("Make bodies", variant="primary", elem_id="m-run")
                        m_cancel = gr.Button("Cancel")
                with gr.Column():
                    m_status = gr.Markdown("", elem_id="m-status")
                    m_grid = gr.Image(label="All bodies", type="pil", interactive=False)
                    m_gallery = gr.Gallery(label="Each body", columns=4, elem_id="m-gallery")
                    m_files = gr.File(label="result.png, compare.png, latents.npz, report.json", interactive=False)

        def many(folder, selfie, face_seed, count, first, steps, body, face_net, shoes_net):
            face_photo, fseed = face_input(selfie, face_seed, folder)
            start = _seed(first, "the first body seed") or 0
            req = ComposeRequest(
                command="sample-bodies", body=body or "default", face_net=face_net or "default",
                body_sources=tuple(jobs.LatentSource(seed=start + i) for i in range(int(count))),
                face_source=jobs.LatentSource(seed=fseed or 0, key="face"), steps=int(steps),
                device=_device(cfg.device), cache_dir=folder / "cache", keep_face=True,
                face_photo=face_photo, embed=embed)
            yield {m_status: "starting…", m_files: None}
            out = yield from _drive(run_compose_request, req, m_status)
            files = out.job.files
            each = [_image(files[f"result_{i:03d}.png"]) for i in range(int(count))
                    if f"result_{i:03d}.png" in files] or [_image(files["result.png"])]
            yield {m_status: f"{len(each)} bodies in {out.job.report['timings_s']['optimize']:.1f} s",
                   m_grid: _image(files["result.png"]), m_gallery: each,
                   m_files: _zip(out, folder, "insetgan-bodies.zip")}

        m_inputs = [m_selfie, m_face_seed, m_count, m_first, m_steps, *m_nets]
        m_event = m_run.click(guarded(root, m_status, many), m_inputs,
                              [m_status, m_grid, m_gallery, m_files], api_name="many", **worker)
        m_cancel.click(None, None, None, cancels=[m_event])

        with gr.Tab("Fix a face"):
            with gr.Row():
                with gr.Column():
                    f_photo = gr.File(label="A photo with a face", file_types=["image"], type="filepath")
                    f_reference = gr.File(label="Your selfie (optional: the face becomes yours)",
                                          file_types=["image"], type="filepath")
                    f_steps = gr.Slider(1, 400, value=30, step=1, label="Steps")
                    f_keep = gr.Checkbox(True, label="Keep the original face if the result is worse")
                    f_face = gr.Textbox(cfg.face_net, label="Face network")
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
            image = take_upload(photo, folder, "photo")
            if image is None:
                raise InsetganError("upload a photo with a face")
            req = RefineRequest(image=image, face_net=face_net or "default",
                                reference=take_upload(reference, folder, "reference"), steps=int(steps),
                                device=_device(cfg.device), cache_dir=folder / "cache", embed=embed,
                                keep_best=bool(keep))
            yield {f_status: "starting…", f_files: None}
            out = yield from _drive(run_refine_request, req, f_status)
            files = out.job.files
            yield {f_status: f"done in {out.job.report['timings_s']['optimize']:.1f} s",
                   f_result: _image(files["result.png"]), f_compare: _image(files["compare.png"]),
                   f_metrics: summary(out.job.report), f_files: _zip(out, folder, "insetgan-face.zip")}

        f_event = f_run.click(guarded(root, f_status, fix), [f_photo, f_reference, f_steps, f_keep, f_face],
                              [f_status, f_result, f_compare, f_metrics, f_files], api_name="fix", **worker)
        f_cancel.click(None, None, None, cancels=[f_event])
    page.queue(max_size=cfg.queue_size, default_concurrency_limit=1)
    return page


def serve(cfg: AppConfig, block: bool = True) -> Any:
    """Build and launch the page on ``cfg.host:cfg.port``; returns the running Blocks (``block=False``)."""
    root = cfg.workdir or Path(tempfile.mkdtemp(prefix="insetgan-app-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")  # uploads and results stay in the app's folder
    gr = import_gradio()
    page = build_page(cfg, root)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    page.launch(server_name=cfg.host, server_port=cfg.port, share=False, inbrowser=False, quiet=True,
                max_file_size=f"{cfg.max_file_mb}mb", prevent_thread_lock=not block, theme=theme,
                show_error=True, footer_links=[], ssr_mode=False)
    return page
