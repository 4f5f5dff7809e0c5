"""The page in a real Chromium (Debian's, driven by Playwright): identify a photo,
enroll a person, see them named, erase them, see them gone.

Set FACEDEX_UPDATE_SCREENSHOT=1 to write the screenshot to docs/service.png.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest

from .conftest import REPO, lfw_image, lfw_images
from .test_service_support import running, serve_extra

pytestmark = [serve_extra, pytest.mark.filterwarnings("ignore:Using `httpx` with")]

NEWCOMER = "George_W_Bush"  # many LFW photos; not in the base gallery


def _shrink_png(data: bytes) -> bytes:
    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


def test_identify_enroll_erase_in_the_page(browser, gallery_copy, tmp_path):
    probe = lfw_image("Colin_Powell", 10)  # not enrolled (images 1-6 are); Colin Powell and someone unknown
    newcomer = lfw_images(NEWCOMER)
    enroll_files = []
    for f in newcomer[:4]:
        enroll_files.append(tmp_path / f.name)
        shutil.copy(f, enroll_files[-1])
    newcomer_probe = newcomer[10]
    with running(gallery_copy, tmp_path) as server:
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((server.url, "blob:", "data:")) else None)
        page.goto(server.url + "/")
        page.wait_for_selector("#g-threshold:not(:text('…'))")
        assert "8 people" in page.inner_text("#g-totals")

        # identify a photo: the name appears on a box and in the list
        page.set_input_files("#file", str(probe))
        page.wait_for_selector("#face-list li")
        assert "Colin_Powell" in page.inner_text("#face-list")
        box = page.locator(".face.known").first
        assert "Colin_Powell" in box.get_attribute("aria-label")
        box.focus()
        assert "Colin_Powell" in page.inner_text("#face-detail")
        assert page.get_attribute("#photo", "alt").startswith("The photo, with")
        unknown = page.locator(".face.unknown").first
        unknown.click()  # the closest candidates of an unknown face
        assert "Closest" in page.inner_text("#face-detail")
        shot = page.screenshot(full_page=False)

        # a stranger to the gallery is unknown, with candidates on click
        page.set_input_files("#file", str(newcomer_probe))
        page.wait_for_selector("#face-list li .name.unknown")
        page.locator(".face.unknown").first.click()
        assert "Closest" in page.inner_text("#face-detail")

        # enroll through the page
        page.click("#tab-people")
        page.wait_for_selector(".person")
        page.fill("#new-name", NEWCOMER)
        page.set_input_files("#new-files", [str(f) for f in enroll_files])
        page.click("#new-submit")
        card = page.locator(f".person[data-name='{NEWCOMER}']")
        card.wait_for()
        page.wait_for_selector(f".person[data-name='{NEWCOMER}'] img.thumb")
        assert card.locator("img.thumb").get_attribute("alt") == f"Face of {NEWCOMER}"
        assert "4 faces" in card.inner_text()

        # now the page names them
        page.click("#tab-identify")
        page.set_input_files("#file", str(newcomer_probe))
        page.locator("#face-list .name.known", has_text=NEWCOMER).wait_for()

        # erase, with confirmation; cancel first
        page.click("#tab-people")
        card.wait_for()
        card.get_by_role("button", name=f"Erase {NEWCOMER}").click()
        page.click("#confirm-cancel")
        assert card.count() == 1
        card.get_by_role("button", name=f"Erase {NEWCOMER}").click()
        page.click("#confirm-ok")
        card.wait_for(state="detached")
        assert NEWCOMER not in page.inner_text("#people")

        # gone: the photo is unknown again, and the thumbnail is gone with the person
        page.click("#tab-identify")
        page.set_input_files("#file", str(newcomer_probe))
        page.wait_for_selector("#face-list li .name.unknown")
        assert NEWCOMER not in page.inner_text("#face-list")
        from facedex.service.thumbs import Thumbnails

        assert not Thumbnails(gallery_copy.with_name(gallery_copy.name + ".serve") / "thumbs").path(NEWCOMER).exists()
        assert errors == [], errors
        assert outside == [], outside  # nothing but this service (no CDN)
        page.close()

    png = _shrink_png(shot)
    assert len(png) < 400_000
    (tmp_path / "service.png").write_bytes(png)
    if os.environ.get("FACEDEX_UPDATE_SCREENSHOT"):
        (REPO / "docs" / "service.png").write_bytes(png)


def test_a_video_in_the_page(browser, gallery_copy, tmp_path, tmp_path_factory):
    from .video_fixtures.clips import clip_cache, pair_clip

    clip = clip_cache(tmp_path_factory).video(pair_clip())
    with running(gallery_copy, tmp_path, "--job-after", "0") as server:  # every answer through a job
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#g-threshold:not(:text('…'))")
        page.set_input_files("#file", str(clip))
        page.locator("#presence td.name", has_text="Ariel_Sharon").wait_for()
        assert page.locator("#tracks tbody tr").count() >= 2  # Ariel Sharon and a stranger
        assert "unknown" in page.inner_text("#tracks")
        page.get_by_role("button", name="play from 0:00.0").first.wait_for()
        page.close()


def test_the_interactive_docs_work_offline(browser, gallery_copy, tmp_path):
    with running(gallery_copy, tmp_path) as server:
        page = browser.new_page()
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server.url) else None)
        page.goto(server.url + "/docs")
        page.locator(".opblock").first.wait_for()
        assert page.locator(".opblock").count() >= 10
        assert page.get_by_role("button", name="Authorize").count() == 1
        assert outside == []
        page.close()


def test_the_page_works_with_the_keyboard_and_a_key(browser, gallery_copy, tmp_path):
    key = "k" * 8 + "-browser-test-key"
    with running(gallery_copy, tmp_path, env={"FACEDEX_API_KEY": key}) as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#keybox:not([hidden])")
        page.fill("#key", "wrong-key-but-long-enough")
        page.keyboard.press("Enter")
        page.wait_for_selector("#key-error:not([hidden])")
        page.fill("#key", key)
        page.keyboard.press("Enter")
        page.wait_for_selector("#keybox[hidden]", state="attached")
        assert "8 people" in page.inner_text("#g-totals")
        # the file button is reachable with Tab
        page.keyboard.press("Tab")
        names = []
        for _ in range(8):
            names.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
            page.keyboard.press("Tab")
        assert "pick" in names
        page.close()


def test_the_page_explains_a_face_left_unknown_by_the_crowding_penalty(browser, tmp_path):
    # a gallery of 40 people who all resemble the probe about equally (similarity ~0.6):
    # the closest passes the threshold, but a face like everyone is weak evidence for any one
    import numpy as np

    import facedex
    from facedex.media import load_image

    probe = lfw_image("Colin_Powell", 10)
    g_path = tmp_path / "crowd.gallery"
    with facedex.Gallery.open(g_path, create=True) as g:
        image = load_image(probe)
        faces = g.pipeline.detect(image)
        face = max(faces, key=lambda f: f.area)
        e = g.pipeline.embed_faces(image, [face])[0]
        rng = np.random.default_rng(0)
        for i in range(40):
            noise = rng.normal(size=e.shape).astype(np.float32)
            noise -= (noise @ e) * e
            v = 0.62 * e + np.sqrt(1 - 0.62 ** 2) * noise / np.linalg.norm(noise)
            g.add_embeddings(f"Lookalike {i:02d}", v[None].astype(np.float32), g.embedder_card.id)
        (decision,) = g.decide(e[None])
        assert decision.name is None and decision.similarity >= 0.47 > decision.score  # what the page must explain
    with running(g_path, tmp_path) as server:
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_selector("#g-threshold:not(:text('…'))")
        page.set_input_files("#file", str(probe))
        page.wait_for_selector("#face-list li")
        boxes = page.locator(".face.unknown")
        whys = []
        for i in range(boxes.count()):  # the photo's other face is unknown too, for the plain reason
            boxes.nth(i).click()
            whys.append(page.inner_text("#face-why"))
        crowded = [w for w in whys if "resembles many other enrolled people" in w]
        assert len(crowded) == 1 and "reaches the threshold" in crowded[0] and "unknown" in crowded[0]
        assert all(w.startswith("No one in the gallery reaches") for w in whys if w not in crowded)
        assert errors == []
