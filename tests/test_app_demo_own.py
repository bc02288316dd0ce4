"""The Demo on the sidebar's image, its wording and what "Open in Patch layout" says (AppTest and the
demo module): a bundled file is labelled as a sample, counts are grammatical ("1 token"), the page
that opens lists the settings it changed, the scenes run on an uploaded image, and each takeaway's
"more"/"less" follows the numbers it quotes."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from adapatch.app_support import demo  # noqa: E402
from adapatch.app_support.images import decode_upload  # noqa: E402
from adapatch.fidelity import MAX_PSNR  # noqa: E402
from tests.app_helpers import app, ok  # noqa: E402

PAGE = "pages/demo.py"


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(a, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _scene_index(key: str) -> int:
    return demo.SCENE_KEYS.index(key)


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A flat left half and a busy right half (so adaptive and uniform layouts differ)."""
    rng = np.random.default_rng(seed)
    a = np.full((h, w, 3), 120, np.uint8)
    a[:, w // 2:] = rng.integers(0, 256, (h, w - w // 2, 3), dtype=np.uint8)
    return a


def _demo_on_upload(name: str, image: np.ndarray) -> AppTest:
    at = app()
    at.run()
    at.switch_page(PAGE).run()
    at.file_uploader(key="uploader").set_value((name, _png(image), "image/png")).run()
    ok(at)
    at.segmented_control(key="w_demo_source").set_value("sidebar").run()
    ok(at)
    return at


def _texts(at: AppTest) -> list[str]:
    """Every caption, markdown, info and image caption on the page."""
    out = [e.value for kind in ("caption", "markdown", "info", "subheader") for e in at.get(kind)]
    captions = [c for img in at.get("image") for c in img.captions]
    assert captions, "no image captions read"
    return out + captions


def test_a_bundled_file_opened_from_the_demo_is_labelled_as_a_sample() -> None:
    index = _scene_index("dense_texture")
    file = demo.SCENES[index].image.split(":", 1)[1]
    at = app()
    at.run()
    at.switch_page(PAGE).run()
    at.segmented_control(key="w_demo_step").set_value(index).run()
    at.button(key="demo_open").click().run()
    ok(at)
    labels = at.selectbox(key="w_image").options
    assert f"Sample · {file} (bundled dataset)" in labels
    assert not any(lab.startswith("Upload") and file in lab for lab in labels)
    assert at.selectbox(key="w_image").value == at.session_state["ap_current"]


def test_open_in_patch_layout_says_which_settings_it_changed() -> None:
    index = _scene_index("text_page")  # quadtree at 50%: the user's defaults are multiscale at 30%
    at = app()
    at.run()
    at.switch_page(PAGE).run()
    at.segmented_control(key="w_demo_step").set_value(index).run()
    at.button(key="demo_open").click().run()
    ok(at)
    assert at.title[0].value == "Patch layout"
    notes = [i.value for i in at.info if "Demo" in i.value]
    assert len(notes) == 1, [i.value for i in at.info]
    note = notes[0]
    assert "strategy quadtree (was multiscale)" in note
    assert "budget 50% of the 16 px grid (was 30% of the 16 px grid)" in note
    assert "patch sizes" not in note  # 16-64 px before and after: not listed as a change
    assert [t.value for t in at.toast] == [note]
    at.run()  # said once: the next run of the page does not repeat it
    assert not any("Demo" in i.value for i in at.info)
    at.switch_page(PAGE).run()  # the same step again: nothing left to change
    at.button(key="demo_open").click().run()
    assert any("already matched" in i.value for i in at.info)


def test_the_demo_runs_on_an_uploaded_image_and_opens_it() -> None:
    image = _texture(200, 360)
    at = _demo_on_upload("mine.png", image)
    key = at.session_state["ap_current"]
    assert key.startswith("upload:")
    entry = decode_upload("mine.png", _png(image))
    sc = demo.SCENES[0]
    view = demo.build_step(sc, "cpu", entry)
    assert view.own_image and view.main.layout.width == 360 and view.main.layout.height == 200
    assert [m.value for m in at.metric if m.label == "Tokens"] == [f"{p.tokens:,}" for p in view.panels]
    assert any("mine" in c.value and "sidebar" in c.value for c in at.caption)
    assert at.info[0].value == view.takeaway()
    at.segmented_control(key="w_demo_step").set_value(_scene_index("task_digit")).run()
    ok(at)  # the digit scene keeps its own digit and says so
    assert any("keeps its digit" in c.value for c in at.caption)
    at.segmented_control(key="w_demo_step").set_value(_scene_index("panorama")).run()
    ok(at)
    rows = at.dataframe[0].value
    assert rows.iloc[0]["Size"] == "360x200"  # the user's image first in the budget table
    at.segmented_control(key="w_demo_step").set_value(0).run()
    at.button(key="demo_open").click().run()
    ok(at)
    assert at.title[0].value == "Patch layout" and at.session_state["ap_current"] == key
    assert [m.value for m in at.metric if m.label == "Tokens"][0] == f"{view.main.tokens:,}"


def test_a_tiny_image_reads_one_token_not_one_tokens() -> None:
    at = _demo_on_upload("tiny.png", _texture(9, 12))
    texts = _texts(at)
    assert any(t.endswith("· 1 token") for t in texts), texts  # the pictures' captions
    assert any(re.search(r"\b1 token\b", t) for t in texts), texts
    assert not any(re.search(r"\b1 tokens\b", t) for t in texts), texts
    from PIL import Image

    png = demo.build_step(demo.SCENES[0], "cpu", decode_upload("tiny.png", _png(_texture(9, 12)))).main.png
    shown = np.asarray(Image.open(io.BytesIO(png)))
    assert min(shown.shape[:2]) >= 9 * 10  # enlarged for display, not a 12x9 picture the browser blurs
    block = shown[: shown.shape[0] // 9, : shown.shape[1] // 12 // 2]  # one source pixel: flat (nearest neighbour)
    assert np.ptp(block[2:-2, 2:-2].reshape(-1, shown.shape[2]), axis=0).max() <= 1


def _psnr_claim(text: str) -> str:
    m = re.search(r"\*\*(\d+\.\d\d) dB (more|less)\*\*", text)
    return m.group(2) if m else ("same" if "the same" in text else "lossless" if "lossless" in text else "")


@pytest.mark.parametrize("seed", range(4))
def test_each_takeaway_says_more_or_less_as_its_numbers_do(seed: int) -> None:
    """On images the project does not bundle (random flat/busy mixes of several sizes), the takeaway of
    every scene that runs on any image says "more" exactly when the main layout's PSNR is higher, and
    quotes the difference it names."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(40, 300)), int(rng.integers(40, 400))
    a = _texture(h, w, seed)
    if seed % 2:  # busy everywhere: the uniform grid tends to win
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    entry = decode_upload(f"r{seed}.png", _png(a))
    seen = set()
    for sc in demo.SCENES:
        if not sc.any_image:
            continue
        v = demo.build_step(sc, "cpu", entry)
        m, o = v.panels[:2]
        text = v.takeaway()
        claim = _psnr_claim(text)
        if max(m.psnr, o.psnr) >= MAX_PSNR:
            assert claim in ("lossless", "same"), text
            continue
        gap = m.psnr - o.psnr
        if abs(gap) < 0.005:
            assert claim == "same", text
        else:
            assert claim == ("more" if gap > 0 else "less"), text
            assert f"{abs(gap):.2f} dB" in text
        seen.add(claim)
        assert f"{m.psnr:.2f} dB" in text and f"{o.psnr:.2f} dB" in text
    assert seen


def test_versus_wording() -> None:
    assert "**0.45 dB less**" in demo.compare_text(31.55, 32.00, "the adaptive layout", "the grid")
    assert "**0.45 dB more**" in demo.compare_text(32.00, 31.55, "the adaptive layout", "the grid")
    assert "the same" in demo.compare_text(30.0, 30.001, "a", "b")
    assert demo.compare_text(MAX_PSNR, 30.0, "a", "b") == "a is **lossless**, b is not"
    assert demo.compare_text(30.0, MAX_PSNR, "a", "b") == "b is **lossless**, a is not"
