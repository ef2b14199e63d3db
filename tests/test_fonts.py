"""The fonts the typography recipes draw with ship in the package, are the recorded files, and are what renders use."""

from __future__ import annotations

import hashlib

import pytest
from conftest import REPO

from vlmsafety.attacks import ImageSpec, render_image
from vlmsafety.attacks import fonts as fonts_mod
from vlmsafety.attacks import images as images_mod
from vlmsafety.attacks.fonts import FONT_DIR, FREEMONO_BOLD, LIBERATION_SANS, SHIPPED
from vlmsafety.errors import VlmSafetyError

# sha256 of each file as extracted (dpkg-deb -x) from the Debian 12 packages fonts-freefont-ttf 20120503-10
# and fonts-liberation2 2.1.5-1, computed when they were added (vlmsafety/assets/fonts/README.md).
EXTRACTED = {
    "FreeMonoBold.ttf": "30b4b98748839431a366123f859871549b57e461a8b8ec2d3d65b55b2fb9f22d",
    "LiberationSans-Regular.ttf": "8d91388f1d3604b3b8ae0e3ee2d140e50cd6122f9214514f4aca772540a4076d",
}


@pytest.fixture
def fresh(monkeypatch):
    """No font path or render cached from another test."""
    fonts_mod.shipped_font_path.cache_clear()
    images_mod._render_cached.cache_clear()
    yield
    fonts_mod.shipped_font_path.cache_clear()
    images_mod._render_cached.cache_clear()


def test_shipped_files_are_the_extracted_ones_with_licence_and_provenance():
    readme = (FONT_DIR / "README.md").read_text(encoding="utf-8")
    assert set(SHIPPED) == set(EXTRACTED)
    for name, digest in EXTRACTED.items():
        assert hashlib.sha256((FONT_DIR / name).read_bytes()).hexdigest() == digest == SHIPPED[name].sha256
        assert digest in readme and SHIPPED[name].licence in readme
        assert (FONT_DIR / SHIPPED[name].licence_file).stat().st_size > 1000
    assert "Special Font Exception" in (FONT_DIR / FREEMONO_BOLD.licence_file).read_text(encoding="utf-8")
    assert "GNU GENERAL PUBLIC LICENSE" in (FONT_DIR / FREEMONO_BOLD.licence_file).read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in (FONT_DIR / LIBERATION_SANS.licence_file).read_text(encoding="utf-8")


def test_fonts_are_package_data():
    # Without this a wheel or sdist install would have no font and every FigStep render would fail.
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    package_data = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert any(line.startswith("vlmsafety = [") and '"assets/fonts/*"' in line for line in package_data.splitlines())
    assert FONT_DIR == REPO / "vlmsafety" / "assets" / "fonts"


@pytest.mark.parametrize(
    "kind, params, font, other",
    [("figstep", {"instruction": "Steps to x."}, FREEMONO_BOLD, LIBERATION_SANS),
     ("typo", {"text": "x y"}, LIBERATION_SANS, FREEMONO_BOLD)],
)
def test_renders_draw_with_the_shipped_font_and_never_the_systems(kind, params, font, other, fresh, monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("a font was looked up by name (system fonts)")

    monkeypatch.setattr("PIL.ImageFont.truetype", no_lookup)
    monkeypatch.setattr("subprocess.run", no_lookup)  # fc-match
    by_default = render_image(ImageSpec(kind, params)).tobytes()
    assert render_image(ImageSpec(kind, {**params, "font": str(FONT_DIR / font.file)})).tobytes() == by_default
    assert render_image(ImageSpec(kind, {**params, "font": font.file})).tobytes() == by_default  # by file name
    assert render_image(ImageSpec(kind, {**params, "font": other.file})).tobytes() != by_default  # the font matters


def test_a_damaged_shipped_font_is_refused(fresh, monkeypatch, tmp_path):
    damaged = tmp_path / "fonts"
    damaged.mkdir()
    (damaged / "FreeMonoBold.ttf").write_bytes((FONT_DIR / "FreeMonoBold.ttf").read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(fonts_mod, "FONT_DIR", damaged)
    with pytest.raises(VlmSafetyError, match=r"FreeMonoBold.ttf has sha256 .* not the recorded 30b4b9874883"):
        render_image(ImageSpec("figstep", {"instruction": "Steps to x."}))
    with pytest.raises(VlmSafetyError, match=r"LiberationSans-Regular.ttf is missing; reinstall vlmsafety"):
        render_image(ImageSpec("typo", {"text": "x"}))
