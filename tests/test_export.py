"""Export: every format written with the right depth, size, ICC sRGB profile and values.

The pictures are read back independently: JPEG/8-bit PNG with Pillow, TIFF with
tifffile (tag 34675 for the profile), PNG chunks parsed from the bytes (IHDR depth,
iCCP profile, CRCs) and 16-bit PNG pixels decoded here; XISF/FITS through core.io
(float32 data and HISTORY). The CLI refuses an extension it cannot write (exit 2
naming it, nothing written) and JPEG at 16 bits before any work.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from napari_astro.core.image import AstroImage
from napari_astro.core.io.export import TIFF_ICC_TAG, export, srgb_profile


@pytest.fixture(scope="module")
def picture():
    """A smooth colour picture in [0, 1] (a stretched image), 301 x 457 px, odd sizes."""
    yy, xx = np.mgrid[0:301, 0:457].astype(np.float32)
    data = np.stack([xx / 456, yy / 300, 0.5 + 0.4 * np.sin(xx / 37) * np.cos(yy / 23)])
    return AstroImage(np.clip(data, 0, 1).astype(np.float32), history=["post.stf {}"])


def _png_chunks(raw: bytes) -> dict:
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", raw[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.setdefault(kind, []).append(body)
        pos += 12 + n
    return chunks


def _png_pixels(raw: bytes) -> np.ndarray:
    """Decode a filter-0, non-interlaced PNG (what our encoder writes)."""
    ch = _png_chunks(raw)
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ch[b"IHDR"][0])
    assert interlace == 0
    n = 3 if ctype == 2 else 1
    rows = np.frombuffer(zlib.decompress(b"".join(ch[b"IDAT"])), np.uint8).reshape(h, -1)
    assert np.all(rows[:, 0] == 0)
    dt = np.dtype(">u2") if depth == 16 else np.uint8
    return rows[:, 1:].copy().view(dt).reshape(h, w, n).squeeze().astype(np.dtype(dt).newbyteorder("="))


def _expected(data: np.ndarray, bits: int) -> np.ndarray:
    full = 255 if bits == 8 else 65535
    return np.rint(np.moveaxis(np.clip(data, 0, 1), 0, -1) * full).astype(np.uint8 if bits == 8 else np.uint16)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_depth_values_and_iccp(tmp_path, picture, bits):
    out = export(picture, tmp_path / "a.png", bits=bits)
    raw = out.read_bytes()
    ch = _png_chunks(raw)
    assert struct.unpack(">IIB", ch[b"IHDR"][0][:9]) == (457, 301, bits)
    body = ch[b"iCCP"][0]
    name, rest = body.split(b"\x00", 1)
    assert rest[0] == 0 and zlib.decompress(rest[1:]) == srgb_profile()
    assert raw.index(b"iCCP") < raw.index(b"IDAT")  # the profile precedes the pixels
    assert np.array_equal(_png_pixels(raw), _expected(picture.data, bits))
    from PIL import Image

    with Image.open(out) as im:  # a valid file for another reader too
        assert im.size == (457, 301) and im.info.get("icc_profile") == srgb_profile()


@pytest.mark.parametrize("bits", [8, 16])
def test_tiff_depth_values_and_icc_tag(tmp_path, picture, bits):
    import tifffile

    out = export(picture, tmp_path / "a.tif", bits=bits)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.tags[TIFF_ICC_TAG].value == srgb_profile()
        pixels = page.asarray()
    assert pixels.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert np.array_equal(pixels, _expected(picture.data, bits))


def test_jpeg_full_and_web_size_with_icc(tmp_path, picture):
    from PIL import Image, ImageCms

    full = export(picture, tmp_path / "full.jpg")
    web = export(picture, tmp_path / "web.jpg", max_size=100, quality=80)
    with Image.open(full) as im:
        assert im.size == (457, 301) and im.mode == "RGB"
        icc = im.info["icc_profile"]
        assert icc == srgb_profile()
        assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
        err = np.abs(np.asarray(im, np.float64) - _expected(picture.data, 8)).mean()
        assert err < 1.5  # quality 95, no chroma subsampling
    with Image.open(web) as im:
        assert im.size == (100, round(301 * 100 / 457)) and "icc_profile" in im.info
    assert web.stat().st_size < full.stat().st_size


def test_downscale_is_lanczos_of_the_float_data(tmp_path, picture):
    import tifffile

    from napari_astro.core.io.export import resize_image

    out = export(picture, tmp_path / "s.tif", bits=16, max_size=200)
    small = tifffile.imread(out)
    assert small.shape == (132, 200, 3)  # 301 * 200 / 457 = 131.7
    ref = resize_image(picture.data, (132, 200), method="lanczos")
    assert np.array_equal(small, _expected(ref, 16))
    # Never upscales.
    same = export(picture, tmp_path / "t.tif", max_size=5000)
    assert tifffile.imread(same).shape == (301, 457, 3)


def test_mono_png_gets_srgb_chunk_not_an_rgb_profile(tmp_path, picture):
    out = export(AstroImage(picture.data[0]), tmp_path / "m.png", bits=16)
    ch = _png_chunks(out.read_bytes())
    assert b"iCCP" not in ch and ch[b"sRGB"] == [b"\x00"]
    assert _png_pixels(out.read_bytes()).shape == (301, 457)
    plain = export(picture, tmp_path / "n.png", icc=False)
    assert b"iCCP" not in _png_chunks(plain.read_bytes())


@pytest.mark.parametrize("ext", [".xisf", ".fits"])
def test_xisf_fits_float_with_history(tmp_path, picture, ext):
    from napari_astro.core.io import read_image

    out = export(picture, tmp_path / f"a{ext}", max_size=229)
    back = read_image(out)
    assert back.data.dtype == np.float32 and back.data.shape == (3, 151, 229)
    assert "post.stf {}" in back.history
    full = read_image(export(picture, tmp_path / f"b{ext}"))
    np.testing.assert_array_equal(full.data, picture.data)


def test_export_refuses_what_it_cannot_write(tmp_path, picture):
    from napari_astro.core.errors import BadInputError

    with pytest.raises(BadInputError, match=r"\.bmp"):
        export(picture, tmp_path / "a.bmp")
    with pytest.raises(BadInputError, match="8-bit only"):
        export(picture, tmp_path / "a.jpg", bits=16)
    with pytest.raises(BadInputError, match="8 or 16"):
        export(picture, tmp_path / "a.png", bits=12)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- CLI
def test_cli_export_formats_and_refusals(tmp_path, picture, capsys):
    import tifffile
    from PIL import Image

    from napari_astro.cli import main
    from napari_astro.core.io import read_image, write_image

    src = tmp_path / "in.fits"
    write_image(picture, src)
    before = src.read_bytes()
    assert main(["export", str(src), str(tmp_path / "web.jpg"), "--max-size", "120"]) == 0
    with Image.open(tmp_path / "web.jpg") as im:
        assert im.size == (120, 79) and im.info["icc_profile"] == srgb_profile()
    assert main(["export", str(src), str(tmp_path / "a.tif"), "--bits", "16"]) == 0
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.pages[0].dtype == np.uint16 and TIFF_ICC_TAG in tif.pages[0].tags
    assert main(["export", str(src), str(tmp_path / "b.png"), "--bits", "16"]) == 0
    assert _png_chunks((tmp_path / "b.png").read_bytes())[b"IHDR"][0][8] == 16
    assert main(["export", str(src), str(tmp_path / "c.xisf"), "--max-size", "229"]) == 0
    back = read_image(tmp_path / "c.xisf")
    assert back.data.shape == (3, 151, 229) and back.history[-1].startswith("post.export ")
    capsys.readouterr()
    for name, argv, needle in [("x.bmp", [], "x.bmp"), ("x.webp", [], "x.webp"),
                               ("x.jpg", ["--bits", "16"], "--bits"),
                               ("x.png", ["--max-size", "0"], "max_size")]:
        assert main(["export", str(src), str(tmp_path / name), *argv]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / name).exists()
    assert main(["export", str(src), str(tmp_path / "web.jpg")]) == 2  # exists, no --overwrite
    assert src.read_bytes() == before


# --------------------------------------------------------------------------- widget
def test_export_widget_writes_selected_layer(make_napari_viewer, qtbot, tmp_path, picture):
    import tifffile

    from napari_astro.widgets._layers import image_to_layer_data
    from napari_astro.widgets.export import ExportWidget

    viewer = make_napari_viewer()
    data, kw, _ = image_to_layer_data(picture, "final")
    layer = viewer.add_image(data, **kw)
    w = ExportWidget(viewer)
    w.image_picker.value = layer
    w.path_edit.setText(str(tmp_path / "final.png"))
    w.format_combo.setCurrentText("TIFF")
    assert w.path_edit.text().endswith("final.tif")
    w.form["bits"].value = 16
    w.form["max_size"].value = 200
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=30_000)
    assert w.last_error is None, w.last_error
    with tifffile.TiffFile(tmp_path / "final.tif") as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.shape == (132, 200, 3)
        assert page.tags[TIFF_ICC_TAG].value == srgb_profile()
    # An existing file is refused without the overwrite box; nothing is started.
    assert w.run() is None and "exists" in w.status.text()
    w.overwrite_box.setChecked(True)
    w.path_edit.setText(str(tmp_path / "final.bmp"))
    assert w.run() is None and ".bmp" in w.status.text()


def test_export_widget_docks_from_the_plugin(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-astro", "Export")
    assert widget.run_button.isEnabled() and widget.viewer.layers is not None
