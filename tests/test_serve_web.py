"""The crew's web page in real Chromium against the real app: sign-in and its refusals, and an
operator who prompts, previews, picks a look, renders and downloads."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import av
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from serve_helpers import SAMPLES, start_app, stop_app
from web_helpers import SIZES, browser, shot, sign_in, source_to_screen

VTEST = (768, 576)
MEGAMIND = (720, 528)
ROXANNE_FACE = {80: (361, 255), 160: (273, 225)}  # centre of her face (dlib box) on frames of Megamind.avi; frame 80 has a man behind
PERSON_ON_40 = (558, 228, 612, 336)  # the walker in the red jacket on frame 40 of vtest.avi: x0, y0, x1, y1


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from vfx.consent.keys import generate_key

    root = tmp_path_factory.mktemp("serve-web")
    generate_key(root / "holder.key")
    served = start_app(root, overrides={"consent_db": f"sqlite:///{root / 'consent.sqlite'}"},
                       signing_key=root / "holder.key")
    yield served
    stop_app()


@contextmanager
def signed_in_client(app, who: str = "operator") -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.url, timeout=60) as client:
        response = client.post("/web/session", json={"key": app.keys[who]})
        assert response.status_code == 200, response.text
        yield client


def test_sign_in_sets_an_httponly_strict_cookie_and_csrf_guards_every_change(app):
    with httpx.Client(base_url=app.url, timeout=60) as anonymous:
        wrong = anonymous.post("/web/session", json={"key": "vfx_not-a-key"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert anonymous.get("/v1/jobs").status_code == 401
        tls = anonymous.post("/web/session", json={"key": app.keys["operator"]}, headers={"X-Forwarded-Proto": "https"})
        assert all("; Secure" in c for c in tls.headers.get_list("set-cookie"))
    with signed_in_client(app) as client:
        cookies = client.post("/web/session", json={"key": app.keys["operator"]}).headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("vfx_session="))
        csrf_cookie = next(c for c in cookies if c.startswith("vfx_csrf="))
        assert "HttpOnly" in session and "SameSite=Strict" in session and "Secure" not in session
        assert "HttpOnly" not in csrf_cookie  # the page reads it to send it back as a header
        assert app.keys["operator"] not in session, "the key is sealed, not readable"
        assert client.get("/web/api/me").json() == {"name": "operator", "role": "operator"}
        assert client.get("/v1/jobs").status_code == 200  # same API, same key, through the cookie
        form = {"config": '{"restyle": {"style": "night"}}', "path": str(SAMPLES / "vtest.avi"), "frames": "0-3"}
        no_csrf = client.post("/v1/jobs", data=form)
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
        wrong_csrf = client.post("/v1/jobs", data=form, headers={"X-CSRF-Token": "guess"})
        assert wrong_csrf.status_code == 403
        job = client.post("/v1/jobs", data=form, headers={"X-CSRF-Token": client.cookies["vfx_csrf"]})
        assert job.status_code == 201, job.text
        cancel = client.delete(f"/v1/jobs/{job.json()['id']}")
        assert cancel.status_code == 403  # a DELETE needs the token too


def test_the_progress_websocket_takes_the_cookie_from_the_page_origin_only(app):
    from websockets.sync.client import connect

    with signed_in_client(app) as client:
        job_id = client.get("/v1/jobs").json()[0]["id"]  # the job of the CSRF test above
        cookie = f"vfx_session={client.cookies['vfx_session']}"
    url = app.url.replace("http://", "ws://") + f"/web/api/jobs/{job_id}/progress"
    with connect(url, additional_headers={"Cookie": cookie, "Origin": app.url}) as ws:
        view = json.loads(ws.recv(timeout=60))
        assert view["id"] == job_id and "frames_per_second" in view
    with pytest.raises(InvalidStatus) as refused:  # another site's page: the handshake itself is refused
        connect(url, additional_headers={"Cookie": cookie, "Origin": "http://evil.example"})
    assert refused.value.response.status_code == 403
    with connect(url, additional_headers={"Origin": app.url}) as ws:  # no cookie, no key
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=60)
        assert ws.close_code == 4401, (ws.close_code, ws.close_reason)


def test_an_expired_or_altered_session_is_refused(app):
    from serving.web.session import Session, seal, session_secret

    secret = session_secret(app.state_dir)
    expired = seal(secret, Session(key=app.keys["operator"], csrf="t", expires_at=time.time() - 1))
    live = seal(secret, Session(key=app.keys["operator"], csrf="t", expires_at=time.time() + 60))
    altered = live[:-6] + ("A" if live[-6] != "A" else "B") + live[-5:]
    for token, status in ((expired, 401), (altered, 401), (live, 200)):
        with httpx.Client(base_url=app.url, cookies={"vfx_session": token}, timeout=60) as client:
            response = client.get("/v1/jobs")
            assert response.status_code == status, (token, response.text)
            if status == 401:
                assert "sign in again" in response.json()["detail"]


def test_a_rights_holder_session_keeps_the_rights_holder_role(app):
    with signed_in_client(app, "rights_holder") as client:
        assert client.get("/web/api/me").json()["role"] == "rights_holder"
        assert client.get("/v1/jobs").status_code == 403
        assert client.get("/web/api/styles").status_code == 403  # operators' tools
        assert client.get("/web/api/clips").status_code == 200  # frames to click faces on


def test_docs_load_without_internet(app):
    with httpx.Client(base_url=app.url, timeout=60) as client:
        page = client.get("/docs").text
        assert "cdn" not in page.lower() and "/web/docs-assets/swagger-ui-bundle.js" in page
        assert client.get("/web/docs-assets/swagger-ui-bundle.js").status_code == 200
    with browser() as chromium:
        page = chromium.new_page(viewport=SIZES["laptop"])
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(app.url) else route.abort())
        page.goto(app.url + "/docs")
        page.wait_for_selector(".opblock-tag", timeout=30_000)
        assert page.locator(".opblock").count() > 5
        shot(page, "docs-offline")


def test_an_operator_prompts_previews_picks_a_look_renders_and_downloads(app, tmp_path):
    with browser() as chromium:
        context = chromium.new_context(viewport=SIZES["laptop"], accept_downloads=True)
        page = context.new_page()
        page.goto(app.url + "/")
        page.fill("#key", "vfx_wrong")
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("#signin-error:has-text('not known')")
        shot(page, "01-sign-in-refused")
        sign_in(page, app.url, app.keys["operator"])
        assert page.evaluate("document.cookie").count("vfx_session") == 0, "the session cookie is HttpOnly"

        page.set_input_files("#upload", str(SAMPLES / "vtest.avi"))
        page.wait_for_selector("#clip-status:has-text('768×576')", timeout=60_000)
        page.keyboard.press("Shift+ArrowRight")  # 10
        page.keyboard.press("Shift+ArrowRight")  # 20
        page.fill("#frame-number", "40")
        page.press("#frame-number", "Enter")
        page.wait_for_function("document.querySelector('.frame-box .frame').src.endsWith('n=40') && document.querySelector('.frame-box .frame').complete")
        x0, y0, x1, y1 = PERSON_ON_40
        start = source_to_screen(page, x0, y0, *VTEST)
        end = source_to_screen(page, x1, y1, *VTEST)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
        page.mouse.move(*end, steps=4)
        page.mouse.up()
        page.wait_for_selector("#matte-status:has-text('subject covers')", timeout=60_000)
        coverage = float(page.inner_text("#matte-status").split("covers ")[1].split("%")[0])
        assert 0.3 < coverage < 3.0, coverage  # one walker: about 1% of the frame, not the box's 1.3% nor nothing
        assert page.locator(".frame-box .matte").is_visible()
        assert "frame 40: box" in page.inner_text("#subjects")
        shot(page, "02-box-and-matte-preview")
        page.click("#preview-ahead")
        page.wait_for_selector("#matte-status:has-text('Tracked frames 40–51')", timeout=120_000)
        page.click(".transport #fwd")  # focus off the inputs, then scrub with the keyboard
        for _ in range(4):
            page.keyboard.press("ArrowRight")
        page.wait_for_selector("#matte-status:has-text('Tracked matte of frame 45')")
        tracked = float(page.inner_text("#matte-status").split("covers ")[1].split("%")[0])
        # the walker is still found five frames on: he alone is 0.25-0.5% of the frame (the 9th session's tracker
        # read about 0.9% here, having taken the woman walking beside him too)
        assert 0.15 < tracked < 3.0, tracked
        shot(page, "02b-matte-tracked-ahead-frame-45")
        page.keyboard.press("Home")
        page.fill("#frame-number", "40")
        page.press("#frame-number", "Enter")
        page.wait_for_selector("#matte-status:has-text('Matte of frame 40')", timeout=60_000)
        page.set_viewport_size(SIZES["hd"])
        shot(page, "02-box-and-matte-preview-1920")
        page.set_viewport_size(SIZES["laptop"])

        page.click("#tabs button[data-tab=look]")
        page.wait_for_function("[...document.querySelectorAll('#styles img')].length >= 5 && "
                               "[...document.querySelectorAll('#styles img')].every(i => i.complete && i.naturalWidth === 256)",
                               timeout=60_000)
        page.select_option("#painting", label="starry_night.jpg")
        page.wait_for_function("(i => i && i.complete && i.naturalWidth === 256)"
                               "(document.querySelector('#styles button[data-key=painting] img'))", timeout=60_000)
        assert "active" in page.get_attribute("#styles button[data-key=painting]", "class")
        page.click("#styles button[data-key='style:oil']")
        page.click("#look-preview")
        page.wait_for_selector("#look-status:has-text('before on the left')", timeout=60_000)
        shot(page, "03-style-thumbnails-and-before-after")

        page.click("#tabs button[data-tab=render]")
        page.fill("#range-first", "0")
        page.fill("#range-last", "47")
        assert "box:" in page.inner_text("#render-summary") and "style oil" in page.inner_text("#render-summary")
        page.click("#render")
        page.wait_for_selector("#progress-text[data-state=running]", timeout=120_000)
        shot(page, "04-render-progress")
        page.wait_for_selector("#progress-text[data-state=done]", timeout=600_000)
        assert "48 of 48 frames" in page.inner_text("#progress-text")
        page.click("#jobs tbody tr:first-child button:has-text('Review')")
        page.wait_for_selector("#provenance dd")
        assert page.inner_text("#provenance-verdict").startswith("verify"), page.inner_text("#provenance")
        page.wait_for_function("document.querySelector('.frame-box .after').complete && "
                               "document.querySelector('.frame-box .after').naturalWidth === 768")
        assert page.evaluate("document.querySelector('#review-video').canPlayType('video/mp4; codecs=\"avc1.640028\"')") != ""
        page.wait_for_function("document.querySelector('#review-video').readyState >= 1", timeout=30_000)
        page.fill("#frame-number", "40")
        page.press("#frame-number", "Enter")
        page.wait_for_function("(a => a.src.includes('n=40') && a.complete && a.naturalWidth === 768)"
                               "(document.querySelector('.frame-box .after'))")
        shot(page, "05-review-wipe-and-provenance")
        page.locator("#provenance").scroll_into_view_if_needed()
        shot(page, "05b-provenance-panel")
        with page.expect_download() as download:
            page.click("#download-output")
        target = tmp_path / "out.mp4"
        download.value.save_as(target)
        context.close()
    with av.open(str(target)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 48


def test_a_rights_holder_enrols_a_face_by_clicking_it_grants_and_revokes(app):
    with browser() as chromium:
        page = chromium.new_page(viewport=SIZES["laptop"])
        sign_in(page, app.url, app.keys["rights_holder"])
        assert page.locator("#tabs button[data-tab=consent]").is_visible()
        assert not page.locator("#tabs button[data-tab=shot]").is_visible()
        page.wait_for_selector("#consent-clips option:has-text('Megamind.avi')", state="attached")
        page.select_option("#consent-clips", label="Megamind.avi")
        page.wait_for_selector("#enrol-status:has-text('click it')")
        for frame, (x, y) in ROXANNE_FACE.items():
            page.fill("#frame-number", str(frame))
            page.press("#frame-number", "Enter")
            page.wait_for_function(f"document.querySelector('.frame-box .frame').src.endsWith('n={frame}') && "
                                   "document.querySelector('.frame-box .frame').complete")
            page.mouse.click(*source_to_screen(page, x, y, *MEGAMIND))
        page.fill("#enrol-name", "roxanne")
        assert page.locator("#enrol-clicks li").count() == 2
        shot(page, "06-consent-click-her-face")
        page.click("#enrol")
        page.wait_for_selector("#enrol-status:has-text('Enrolled roxanne from 2 faces')", timeout=120_000)
        page.fill("#grant-project", "documentary")
        page.fill("#grant-ops", "rejuvenate")
        page.click("#grant")
        page.wait_for_selector("#grants tbody tr td:has-text('active')")
        assert "rejuvenate" in page.inner_text("#grants tbody")
        page.click("#grants tbody button:has-text('Revoke')")
        page.wait_for_selector("#grants tbody tr td:has-text('revoked')")
        page.wait_for_selector("#ledger li[data-kind='grant.revoked']")
        kinds = page.eval_on_selector_all("#ledger li", "items => items.map(i => i.dataset.kind)")
        assert kinds[:3] == ["grant.revoked", "grant.issued", "subject.enrolled"], kinds
        assert "roxanne granted rejuvenate for project documentary" in page.inner_text("#ledger")
        assert "roxanne enrolled: 2 reference faces from Megamind.avi frames 80,160" in page.inner_text("#ledger")
        assert page.inner_text("#ledger-verify").startswith("Ledger verifies")
        shot(page, "07-consent-grant-revoked-ledger")
        page.set_viewport_size(SIZES["hd"])
        shot(page, "07-consent-grant-revoked-ledger-1920")
    with httpx.Client(base_url=app.url, headers=app.headers("rights_holder"), timeout=60) as client:
        subjects = {s["subject"]: s["references"] for s in client.get("/v1/consent/subjects").json()}
        missed = client.post("/web/api/consent/enrol", json={"name": "nobody", "clip": str(SAMPLES / "Megamind.avi"),
                                                             "clicks": [{"frame": 80, "x": 20, "y": 500}]})
    assert subjects == {"roxanne": 2}
    assert missed.status_code == 422 and "no face found under the click" in missed.json()["detail"]


def test_review_copies_carry_aac_because_chromium_plays_no_ac3(tmp_path):
    """A whole-clip output keeps Megamind's AC-3 by stream copy; the page's player gets a copy with AAC."""
    from vfx.config import PipelineConfig
    from vfx.job import JobSpec, run_job
    from vfx.video.writer import browser_review_copy

    master, review = tmp_path / "master.mp4", tmp_path / "review.mp4"
    run_job(JobSpec(str(SAMPLES / "Megamind.avi"), str(master), PipelineConfig.model_validate({"restyle": {"style": "night"}})))
    assert browser_review_copy(str(master), str(review)) is True
    assert browser_review_copy(str(review), str(tmp_path / "again.mp4")) is False  # AAC plays already
    codecs = {}
    for name, path in (("master", master), ("review", review)):
        with av.open(str(path)) as container:
            codecs[name] = [s.codec_context.name for s in container.streams]
            codecs[name].append(sum(1 for _ in container.decode(video=0)))
    assert codecs == {"master": ["h264", "ac3", 270], "review": ["h264", "aac", 270]}
    (tmp_path / "play.html").write_text('<video id="master" src="master.mp4" muted></video>'
                                        '<video id="review" src="review.mp4" muted></video>')
    with browser(["--autoplay-policy=no-user-gesture-required"]) as chromium:
        page = chromium.new_page()
        page.goto((tmp_path / "play.html").as_uri())
        page.evaluate("for (const v of document.querySelectorAll('video')) v.play()")
        page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.currentTime > 1.5)", timeout=60_000)
        decoded = page.evaluate("Object.fromEntries([...document.querySelectorAll('video')].map(v => [v.id, v.webkitAudioDecodedByteCount]))")
    assert decoded["review"] > 0 and decoded["master"] == 0, decoded
