"""`pixme render` and `pixme edit` write the image format their output file's name says."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from bots.cli import main

TOKENS = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "PIXME_GEMINI__API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in TOKENS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray config.toml


@pytest.fixture
def selfie(tmp_path: Path, face_image: Image.Image) -> Path:
    path = tmp_path / "selfie.jpg"
    face_image.resize((256, 256)).save(path, quality=90)
    return path


@pytest.mark.parametrize(("name", "fmt"), [
    ("out.png", "PNG"), ("out.webp", "WEBP"), ("out.jpg", "JPEG"), ("out.JPEG", "JPEG"),
])
@pytest.mark.parametrize("style_id", ["comic", "pixel"])  # the engine answers JPEG for one, PNG for the other
def test_render_writes_the_format_the_extension_names(tmp_path: Path, selfie: Path, name: str, fmt: str,
                                                      style_id: str) -> None:
    out = tmp_path / style_id / name
    assert main(["render", str(selfie), "--style", style_id, "-o", str(out), "--engine", "offline"]) == 0
    with Image.open(out) as written:
        assert written.format == fmt
        assert written.size == (256, 256)


def test_edit_writes_the_format_the_extension_names(tmp_path: Path, selfie: Path) -> None:
    for name, fmt in (("crowned.png", "PNG"), ("crowned.webp", "WEBP"), ("crowned.jpeg", "JPEG")):
        out = tmp_path / name
        assert main(["edit", str(selfie), "add a crown", "-o", str(out), "--engine", "offline"]) == 0
        with Image.open(out) as written:
            assert written.format == fmt


def test_an_output_name_without_a_known_format_is_refused_before_any_work(tmp_path: Path, selfie: Path) -> None:
    for name in ("avatar.gif", "avatar"):
        with pytest.raises(SystemExit, match=r"\.png, \.webp or \.jpg"):
            main(["render", str(selfie), "--style", "comic", "-o", str(tmp_path / name), "--engine", "offline"])
        assert not (tmp_path / name).exists()
