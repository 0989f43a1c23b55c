"""``insetgan app``: the job worker, the HTTP API of the page, and the page in a real browser.

The worker tests run small jobs from ``tests/app_jobs.py`` in the worker process (steps, errors,
a stage over its time limit, a closed job). The server runs as a real ``python -m insetgan app``
process on a free port (``tests/app_server.py``). The HTTP tests
drive it with Gradio's client; the browser tests use Playwright with Debian's Chromium
(``/usr/bin/chromium``, installed by ``.ci/run``; no browser download). Without a browser the
browser tests are skipped with the reason printed; under CI (``CI=true``) they must run.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from insetgan.app.edits import builtin_record
from insetgan.app.runner import StageLimits, Step, Worker, job_folder, leftover_jobs, take_upload
from insetgan.errors import InsetganError
from tests import app_jobs
from tests.app_server import start_app
from tests.conftest import REPO

gradio_client = pytest.importorskip("gradio_client", reason="the app extra is not installed (pip install .[app])")
SELFIE = REPO / "examples" / "selfie.jpg"
CHROMIUM = Path(os.environ.get("INSETGAN_CHROMIUM", "/usr/bin/chromium"))
UNDER_CI = os.environ.get("CI", "").lower() == "true"


# --- the runner, without any web library -------------------------------------------------------

def _drain(gen):
    """Every event of a job and its output (or the error it raised)."""
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        return events, stop.value
    except InsetganError as exc:
        return events, exc


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture()
def worker():
    """A job worker process with short limits on loading, inversion and writing (5 s on optimisation)."""
    w = Worker(StageLimits(loading=1.0, inversion=1.0, optimisation=5.0, writing=1.0), tick_s=0.1)
    yield w
    w.close()


def test_worker_yields_steps_and_returns_the_output(worker):
    events, out = _drain(worker.run(app_jobs.count, 5))
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.step for s in steps] == [1, 2, 3, 4, 5] and out == "counted 5"
    assert steps[-1].text() == "count: step 5/5 · total 4"
    pid = worker.pid
    assert _drain(worker.run(app_jobs.count, 2))[1] == "counted 2" and worker.pid == pid  # the same process


def test_worker_errors_are_one_line_and_the_worker_keeps_serving(worker):
    assert str(_drain(worker.run(app_jobs.refuse, None))[1]) == "no face found in the photo"
    crash = str(_drain(worker.run(app_jobs.crash, None))[1])
    assert crash == "internal error (KeyError: 'missing'); the server log has the details"
    lost = str(_drain(worker.run(app_jobs.die, None))[1])
    assert lost == "the job's worker process stopped (exit code 3); the job was lost"
    assert _drain(worker.run(app_jobs.count, 1))[1] == "counted 1"


@pytest.mark.parametrize("job, request_, stage", [(app_jobs.spin, 30, "loading"),
                                                  (app_jobs.slow_steps, 0.2, "inversion"),
                                                  (app_jobs.slow_writing, 30, "writing")])
def test_a_stage_over_its_limit_is_stopped_and_the_next_job_runs(worker, job, request_, stage):
    worker.start()
    pid = worker.pid
    t0 = time.monotonic()
    events, err = _drain(worker.run(job, request_))
    took = time.monotonic() - t0
    assert str(err) == f"the {stage} stage ran over its time limit (1 s); the job was stopped"
    assert 1.0 <= took < 10, took  # the spinning job would take 30 s
    assert not _alive(pid)  # the process running it was killed
    if stage == "loading":  # a stage without steps says its name and time while it waits
        assert [e.name for e in events] and all(e.name == "loading" for e in events)
    assert _drain(worker.run(app_jobs.count, 3))[1] == "counted 3" and worker.pid != pid


def test_closing_a_job_kills_its_process_and_the_next_job_runs(worker):
    gen = worker.run(app_jobs.slow_steps, 0.005)
    next(gen)
    pid = worker.pid
    gen.close()  # what the page's Cancel and a client that went away do
    assert not _alive(pid)
    assert _drain(worker.run(app_jobs.count, 2))[1] == "counted 2"
    worker.close()
    with pytest.raises(InsetganError, match="the server is stopping"):
        next(worker.run(app_jobs.count, 1))


def test_stage_limits_from_the_command_line():
    assert StageLimits.parse([]) == StageLimits()
    limits = StageLimits.parse(["60", "optimisation=600", "Writing = 5"])
    assert (limits.loading, limits.inversion, limits.optimisation, limits.writing) == (60, 60, 600, 5)
    assert limits.text() == "loading=60, inversion=60, optimisation=600, writing=5"
    for bad, message in [("cooking=5", "unknown stage 'cooking'"), ("loading=soon", "takes SECONDS"),
                         ("nan", "a time limit must be"), ("0", "a time limit must be"),
                         ("loading=-1", "a time limit must be"), ("inf", "a time limit must be"),
                         ("86401", "a time limit must be")]:
        with pytest.raises(InsetganError, match=message):
            StageLimits.parse([bad])


def test_job_folder_holds_the_uploads_and_goes_away(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    upload = uploads / "upload.JPG"
    upload.write_bytes(SELFIE.read_bytes())
    elsewhere = tmp_path / "server-file.jpg"
    elsewhere.write_bytes(SELFIE.read_bytes())
    with job_folder(tmp_path / "jobs") as folder:
        copy = take_upload(str(upload), folder, "selfie", uploads)
        assert Path(copy) == folder / "selfie.jpg" and Path(copy).read_bytes() == upload.read_bytes()
        assert take_upload(None, folder, "outfit", uploads) is None
        # a missing upload and a file outside the upload folder get the same answer
        for path in (uploads / "gone.jpg", elsewhere, uploads / ".." / "server-file.jpg"):
            with pytest.raises(InsetganError) as err:
                take_upload(str(path), folder, "outfit", uploads)
            assert str(err.value) == "the uploaded outfit is missing; upload it again"
        assert leftover_jobs(tmp_path / "jobs") == [folder]
    assert leftover_jobs(tmp_path / "jobs") == [] and upload.is_file()
    with pytest.raises(RuntimeError):
        with job_folder(tmp_path / "jobs"):
            raise RuntimeError("a failed job")
    assert leftover_jobs(tmp_path / "jobs") == []


# --- the server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running ``insetgan app`` (built-in models, 20 inversion steps), its work folder and its process.

    Its ``--models-dir`` holds ``junk.pkl`` (not a checkpoint) beside the built-in models.
    """
    work = tmp_path_factory.mktemp("app")
    models = work / "models"
    models.mkdir()
    (models / "junk.pkl").write_bytes(b"not a pickle")
    try:
        app = start_app(["--invert-steps", "20", "--workdir", str(work / "root"), "--queue-size", "4",
                         "--models-dir", str(models)], work)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield app.url, work / "root", app
    app.stop()


def _client(url: str, tmp: Path):
    return gradio_client.Client(url, verbose=False, download_files=str(tmp), analytics_enabled=False)


def _compose_args(selfie=None, face_seed="", steps=2, body_seed=0, face_net="default"):
    """The Compose tab's inputs, the built-in body's edit sliders at 0 last."""
    file = gradio_client.handle_file(str(selfie)) if selfie is not None else None
    sliders = (0,) * len(builtin_record().get("directions", {}))
    return (file, face_seed, None, None, body_seed, False, "default", steps, False, "default", face_net, "none",
            *sliders)


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
    url, root, _ = server
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
    url, root, _ = server
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
    status = client.predict(*_compose_args(face_seed="1", face_net="junk.pkl"), api_name="/compose")[0]
    assert status.startswith("**Error:**") and "junk.pkl: unrecognised file format" in status and "\n" not in status
    status = client.predict(*_compose_args(face_seed="1"), api_name="/compose")[0]
    assert status.startswith("done")
    assert leftover_jobs(root / "jobs") == []


def test_http_a_full_queue_says_busy(server, tmp_path):
    url, root, _ = server
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
    url, root, _ = server
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
    url, root, _ = server
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

    url, root, _ = server
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


def test_http_a_client_that_goes_away_stops_its_job(server):
    url, root, app = server
    body = json.dumps({"data": list(_compose_args(face_seed="3", steps=400))}).encode()
    call = f"{url}gradio_api/call/compose"
    request = urllib.request.Request(call, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        event = json.load(r)["event_id"]
    stream = urllib.request.urlopen(f"{call}/{event}", timeout=120)
    deadline = time.monotonic() + 120
    line = ""
    while not ("loading" in line or "step" in line) and time.monotonic() < deadline:
        line = stream.readline().decode()  # status lines, until the job runs in the worker process
    workers = app.workers()
    assert leftover_jobs(root / "jobs") and len(workers) == 1
    stream.close()  # the client goes away
    deadline = time.monotonic() + 30  # 400 steps would take minutes here
    while (leftover_jobs(root / "jobs") or app.workers() & workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover_jobs(root / "jobs") == [] and not app.workers() & workers  # its worker process was killed


def _networks_open(browser, url: str):
    """The page in a browser, loaded, with the Compose tab's network menus unfolded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url)
    page.wait_for_selector("#c-run", timeout=60000)
    page.wait_for_load_state("networkidle", timeout=240000)
    page.click("text=Networks (the models this server offers) >> nth=0")
    return page


def test_browser_the_network_menu_offers_the_models_dir(server, browser):
    url, root, _ = server
    page = _networks_open(browser, url)
    page.click("#c-face-net input")
    options = page.locator("#c-face-net [role=option]")
    options.first.wait_for(timeout=30000)
    assert [o.get_attribute("aria-label") for o in options.all()] == ["default", "junk.pkl"]
    page.click("#c-face-net [role=option][aria-label='junk.pkl']")
    page.fill("#c-face-seed textarea, #c-face-seed input", "1")
    page.click("#c-run")
    page.wait_for_function("document.querySelector('#c-status').innerText.startsWith('Error:')", timeout=120000)
    status = page.inner_text("#c-status").strip()
    assert "junk.pkl: unrecognised file format" in status and "\n" not in status
    page.close()
    assert leftover_jobs(root / "jobs") == []


def test_browser_the_body_sliders_show_only_for_the_built_in_body(server, browser):
    url, _, _ = server
    page = _networks_open(browser, url)
    page.click("text=Edit the body (latent directions) >> nth=0")
    slider = page.locator("#c-dir-lower_length")
    slider.wait_for(state="visible", timeout=30000)
    for body, state in (("junk.pkl", "hidden"), ("default", "visible")):
        page.click("#c-body-net input")
        page.click(f"#c-body-net [role=option][aria-label='{body}']")
        slider.wait_for(state=state, timeout=30000)
    page.close()
