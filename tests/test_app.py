"""``insetgan app``: the job runner, the HTTP API of the page, and the page in a real browser.

The server runs as a real ``python -m insetgan app`` process on a free port. The HTTP tests
drive it with Gradio's client; the browser tests use Playwright with Debian's Chromium
(``/usr/bin/chromium``, installed by ``.ci/run``; no browser download). Without a browser the
browser tests are skipped with the reason printed; under CI (``CI=true``) they must run.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from insetgan.app.runner import JobCancelled, job_folder, leftover_jobs, run_job, take_upload
from insetgan.errors import InsetganError
from tests.conftest import REPO

gradio_client = pytest.importorskip("gradio_client", reason="the app extra is not installed (pip install .[app])")
SELFIE = REPO / "examples" / "selfie.jpg"
CHROMIUM = Path(os.environ.get("INSETGAN_CHROMIUM", "/usr/bin/chromium"))
UNDER_CI = os.environ.get("CI", "").lower() == "true"


# --- the runner, without any web library -------------------------------------------------------

def _slow_job(request, progress):
    bar = progress("count", None)
    for i in range(request):
        time.sleep(0.01)
        bar(i + 1, request, {"total": float(i)})
    return f"counted {request}"


def test_run_job_yields_steps_and_returns_the_output():
    gen = run_job(_slow_job, 5)
    steps = []
    with pytest.raises(StopIteration) as stop:
        while True:
            steps.append(next(gen))
    assert [s.step for s in steps] == [1, 2, 3, 4, 5] and stop.value.value == "counted 5"
    assert steps[-1].text() == "count: step 5/5 · total 4"


def test_closing_the_job_cancels_it_and_errors_propagate():
    seen = []

    def job(request, progress):
        bar = progress("loop", None)
        try:
            for i in range(1000):
                time.sleep(0.005)
                bar(i, 1000, {})
                seen.append(i)
        except JobCancelled:
            seen.append("cancelled")
            raise

    gen = run_job(job, None)
    next(gen)
    gen.close()  # what the page's Cancel does: the worker stops at its next step
    assert seen[-1] == "cancelled" and len(seen) < 100
    assert not any(t.name == "insetgan-job" and t.is_alive() for t in threading.enumerate())

    def bad(request, progress):
        raise InsetganError("no face found in the photo")

    with pytest.raises(InsetganError, match="no face found"):
        next(run_job(bad, None))


def test_job_folder_holds_the_uploads_and_goes_away(tmp_path):
    upload = tmp_path / "upload.JPG"
    upload.write_bytes(SELFIE.read_bytes())
    with job_folder(tmp_path / "jobs") as folder:
        copy = take_upload(str(upload), folder, "selfie")
        assert Path(copy) == folder / "selfie.jpg" and Path(copy).read_bytes() == upload.read_bytes()
        assert take_upload(None, folder, "outfit") is None
        with pytest.raises(InsetganError, match="upload it again"):
            take_upload(str(tmp_path / "gone.jpg"), folder, "outfit")
        assert leftover_jobs(tmp_path / "jobs") == [folder]
    assert leftover_jobs(tmp_path / "jobs") == [] and upload.is_file()
    with pytest.raises(RuntimeError):
        with job_folder(tmp_path / "jobs"):
            raise RuntimeError("a failed job")
    assert leftover_jobs(tmp_path / "jobs") == []


# --- the server ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running ``insetgan app`` (built-in models, 20 inversion steps) and its work folder."""
    work = tmp_path_factory.mktemp("app")
    port = _free_port()
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "insetgan", "app", "--port", str(port), "--invert-steps", "20",
                             "--workdir", str(work / "root"), "--queue-size", "4", "--device", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start: {(work / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url, work / "root"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _client(url: str, tmp: Path):
    return gradio_client.Client(url, verbose=False, download_files=str(tmp), analytics_enabled=False)


def _compose_args(selfie=None, face_seed="", steps=2, body_seed=0):
    file = gradio_client.handle_file(str(selfie)) if selfie is not None else None
    return (file, face_seed, None, None, body_seed, False, "default", steps, False, "default", "default", "")


def _submit_in_turn(client, calls):
    """Submit jobs one after the other, each once the server has put it in its queue (so the order is known)."""
    from gradio_client.utils import Status

    jobs = []
    for args in calls:
        job = client.submit(*args, api_name="/compose")
        deadline = time.monotonic() + 60
        while job.status().code in (Status.STARTING, Status.JOINING_QUEUE) and time.monotonic() < deadline:
            time.sleep(0.02)
        jobs.append(job)
    return jobs


def test_http_four_concurrent_jobs_finish_in_order_and_leave_nothing(server, tmp_path):
    url, root = server
    client = _client(url, tmp_path)
    jobs = _submit_in_turn(client, [_compose_args(face_seed=str(i), steps=2, body_seed=i) for i in range(4)])
    assert not any(job.done() for job in jobs[1:])  # all four were in at once
    finished: dict[int, float] = {}
    deadline = time.monotonic() + 600
    while len(finished) < 4 and time.monotonic() < deadline:
        for i, job in enumerate(jobs):
            if i not in finished and job.done():
                finished[i] = time.monotonic()
        time.sleep(0.05)
    assert len(finished) == 4
    assert sorted(finished, key=finished.get) == [0, 1, 2, 3]  # one worker: first come, first served
    for job in jobs:
        status, result, compare, face0, face1, metrics, files = job.result()
        assert status.startswith("done") and "Seam score" in metrics and Path(result).is_file()
        with zipfile.ZipFile(files) as zf:
            assert {"result.png", "compare.png", "latents.npz", "report.json"} == set(zf.namelist())
    assert leftover_jobs(root / "jobs") == []


def test_http_bad_upload_is_a_message_and_the_server_keeps_serving(server, tmp_path):
    url, root = server
    client = _client(url, tmp_path)
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture\n")
    status = client.predict(*_compose_args(selfie=fake), api_name="/compose")[0]
    assert status.startswith("**Error:**") and "\n" not in status
    huge = tmp_path / "huge.png"
    from PIL import Image

    Image.new("1", (20000, 20000)).save(huge)  # a small file, 400 MP when decoded
    status = client.predict(*_compose_args(selfie=huge), api_name="/compose")[0]
    assert status.startswith("**Error:**") and "too large" in status
    status = client.predict(*_compose_args(), api_name="/compose")[0]  # neither selfie nor seed
    assert status == "**Error:** upload your selfie, or give a face seed"
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"not a pickle")
    args = list(_compose_args(face_seed="1"))
    args[9] = str(broken)
    assert client.predict(*args, api_name="/compose")[0].startswith("**Error:**")
    status = client.predict(*_compose_args(face_seed="1"), api_name="/compose")[0]
    assert status.startswith("done")
    assert leftover_jobs(root / "jobs") == []


def test_http_a_full_queue_says_busy(server, tmp_path):
    url, root = server
    client = _client(url, tmp_path)
    jobs = _submit_in_turn(client, [_compose_args(face_seed="2", steps=20)] * 7)
    outcomes = []
    for job in jobs:
        try:
            job.result(timeout=600)
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - the client raises the server's refusal as an exception
            outcomes.append(str(exc))
    busy = [o for o in outcomes if o != "ok"]
    assert outcomes.count("ok") >= 5 and busy and all("queue is full" in o.lower() for o in busy), outcomes
    assert leftover_jobs(root / "jobs") == []


# --- the page in a real browser -----------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (skipped with the reason when either is missing)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright)"
    if reason is None and not CHROMIUM.is_file():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if reason is not None:
        if UNDER_CI:
            pytest.fail(f"browser test under CI: {reason}")
        print(f"\nskipping the browser tests: {reason}")
        pytest.skip(reason)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM),
                               args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                     "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def _upload(page, path: Path, timeout_s: float = 240) -> None:
    """Put ``path`` into the Compose tab's selfie box and wait until the page shows its name.

    Waits for the page's scripts to finish loading first; on a loaded machine a file given before
    the upload box is wired up is dropped by the page, so it is given again until it shows.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_load_state("networkidle", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while True:
        page.set_input_files("#c-selfie input[type=file]", str(path))
        try:
            page.wait_for_selector(f"#c-selfie >> text={path.name}", timeout=30000)
            return
        except PlaywrightTimeout:  # not shown yet: give it again until the deadline
            if time.monotonic() > deadline:
                raise


def test_browser_compose_shows_the_report_numbers(server, browser, tmp_path):
    url, root = server
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    hosts = set()
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.goto(url)
    page.wait_for_selector("#c-run", timeout=60000)
    _upload(page, SELFIE)
    page.fill("#c-steps input[type=number]", "3")
    page.keyboard.press("Enter")
    page.click("#c-run")
    page.wait_for_selector("#c-result img", timeout=300000)
    page.wait_for_function("document.querySelector('#c-metrics').innerText.includes('Seam score')")
    metrics = page.inner_text("#c-metrics")
    with page.expect_download() as dl:
        page.click("#c-files a")
    zpath = tmp_path / "job.zip"
    dl.value.save_as(zpath)
    with zipfile.ZipFile(zpath) as zf:
        report = json.loads(zf.read("report.json"))
    before, after = report["metrics"]["before"][0], report["metrics"]["after"][0]
    assert f"naive paste {before['face:seam']:.3f} → result {after['face:seam']:.3f}" in metrics
    ident = report["identity"]
    shown = [("none" if v is None else f"{v:.3f}") for v in (ident["before"][0], ident["after"][0])]
    assert f"Identity distance to your selfie: {shown[0]} → {shown[1]}" in metrics
    assert report["steps"] == 3 and f"Body drift (L1): {after['body_drift_l1']:.3f}" in metrics
    shot = tmp_path / "compose.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10000
    if os.environ.get("INSETGAN_APP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["INSETGAN_APP_SCREENSHOT"])
    assert hosts == {url.split("/")[2]}  # nothing fetched from anywhere else
    page.close()
    assert leftover_jobs(root / "jobs") == []


def test_browser_not_an_image_then_a_good_job(server, browser, tmp_path):
    url, root = server
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    page.wait_for_selector("#c-run", timeout=60000)
    fake = tmp_path / "holiday.jpg"
    fake.write_text("just text, renamed\n")
    _upload(page, fake)
    page.click("#c-run")
    page.wait_for_function("document.querySelector('#c-status').innerText.startsWith('Error:')", timeout=120000)
    assert "\n" not in page.inner_text("#c-status").strip()
    page.click("#c-selfie button[aria-label='Clear']")
    page.fill("#c-face-seed textarea, #c-face-seed input", "5")
    page.fill("#c-steps input[type=number]", "2")
    page.keyboard.press("Enter")
    page.click("#c-run")
    page.wait_for_function("document.querySelector('#c-status').innerText.startsWith('done')", timeout=300000)
    assert page.query_selector("#c-result img") is not None
    page.close()
    assert leftover_jobs(root / "jobs") == []


def test_http_cancel_frees_the_worker(server, tmp_path):
    from gradio_client.utils import Status

    url, root = server
    client = _client(url, tmp_path)
    long = client.submit(*_compose_args(face_seed="3", steps=400), api_name="/compose")
    deadline = time.monotonic() + 120
    while long.status().code not in (Status.ITERATING, Status.PROCESSING) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover_jobs(root / "jobs"), "the long job should be running in its folder"
    t0 = time.monotonic()
    long.cancel()
    status = client.predict(*_compose_args(face_seed="4", steps=2), api_name="/compose")[0]
    assert status.startswith("done") and time.monotonic() - t0 < 60  # 400 steps would take minutes here
    deadline = time.monotonic() + 30
    while leftover_jobs(root / "jobs") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover_jobs(root / "jobs") == []
