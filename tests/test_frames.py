"""Frame classification (IMAGETYP / folder) and grouping, on synthetic and real headers."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from napari_astro.core.errors import BadInputError
from napari_astro.core.frames import (FrameInfo, FrameType, GroupKey, check_same_shape,
                                      frame_type_from, group_frames, scan_frames)


def _write(path, *, shape=(20, 30), dtype=np.uint16, **keys):
    path.parent.mkdir(parents=True, exist_ok=True)
    hdr = fits.Header()
    for k, v in keys.items():
        hdr[k.replace("_", "-")] = v
    fits.PrimaryHDU(np.zeros(shape, dtype=dtype), header=hdr).writeto(path)
    return path


@pytest.mark.parametrize("value, expected", [
    ("Light", FrameType.LIGHT), ("Light Frame", FrameType.LIGHT), ("object", FrameType.LIGHT),
    ("OBJECT  ", FrameType.LIGHT), ("LIGHT", FrameType.LIGHT),
    ("Dark", FrameType.DARK), ("Dark Frame", FrameType.DARK), ("dark", FrameType.DARK),
    ("Flat", FrameType.FLAT), ("Flat Field", FrameType.FLAT), ("FLAT", FrameType.FLAT),
    ("Bias", FrameType.BIAS), ("Bias Frame", FrameType.BIAS), ("zero", FrameType.BIAS),
    ("Offset", FrameType.BIAS), ("BIAS", FrameType.BIAS),
    ("Dark Flat", FrameType.DARKFLAT), ("Flat Dark", FrameType.DARKFLAT),
    ("DarkFlat", FrameType.DARKFLAT), ("FLAT-DARK", FrameType.DARKFLAT),
])
def test_imagetyp_values(value, expected, tmp_path):
    hdr = fits.Header({"IMAGETYP": value})
    # A misleading folder must not override IMAGETYP.
    assert frame_type_from(hdr, tmp_path / "darks" / "x.fits") == expected


@pytest.mark.parametrize("folder, expected", [
    ("lights", FrameType.LIGHT), ("Light", FrameType.LIGHT), ("LIGHTS", FrameType.LIGHT),
    ("darks", FrameType.DARK), ("Dark", FrameType.DARK),
    ("flats", FrameType.FLAT), ("Flat", FrameType.FLAT),
    ("bias", FrameType.BIAS), ("biases", FrameType.BIAS), ("Offsets", FrameType.BIAS),
    ("offset", FrameType.BIAS),
    ("darkflats", FrameType.DARKFLAT), ("flatdarks", FrameType.DARKFLAT),
    ("DarkFlat", FrameType.DARKFLAT), ("dark_flats", FrameType.DARKFLAT),
])
def test_folder_names(folder, expected, tmp_path):
    path = tmp_path / "night" / folder / "2024-01-01" / "f.fits"
    assert frame_type_from(fits.Header(), path) == expected
    # An unrecognised IMAGETYP also falls back to the folder.
    assert frame_type_from(fits.Header({"IMAGETYP": "Tricolor"}), path) == expected


def test_unknown_type_names_file(tmp_path):
    path = tmp_path / "misc" / "frame_001.fits"
    with pytest.raises(BadInputError) as err:
        frame_type_from(fits.Header({"IMAGETYP": "Tricolor"}), path)
    assert str(path) in err.value.message and "unknown frame type" in err.value.message
    assert "\n" not in err.value.message
    with pytest.raises(BadInputError, match="unknown frame type"):
        frame_type_from(fits.Header(), path)
    assert frame_type_from(fits.Header(), path, default=FrameType.LIGHT) == FrameType.LIGHT


def test_scan_session_layout(tmp_path):
    s = tmp_path / "session"
    _write(s / "lights" / "b.fits", IMAGETYP="Light Frame", EXPTIME=120.0, FILTER="Ha",
           CCD_TEMP=-10.2, XBINNING=1, YBINNING=1, GAIN=100, BAYERPAT="RGGB")
    _write(s / "lights" / "a.fit", IMAGETYP="Light Frame", EXPTIME=120.0, FILTER="Ha",
           CCD_TEMP=-9.8, GAIN=100, BAYERPAT="RGGB")
    _write(s / "darks" / "d1.fits", EXPTIME=120.0, CCD_TEMP=-10.0, GAIN=100)
    _write(s / "flats" / "f1.fts", IMAGETYP="FLAT", EXPTIME=2.5, FILTER="Ha", GAIN=100)
    _write(s / "bias" / "z.fits", IMAGETYP="zero", EXPTIME=0.0, GAIN=100)
    _write(s / "notes" / "readme.fits.txt", shape=(2, 2))  # unsupported extension: ignored
    (s / "lights" / "log.txt").write_text("not an image")
    _write(s / "lights" / ".a.fit.part.fits", IMAGETYP="Light")  # our own temporary
    frames = scan_frames([s])
    names = [f.path.name for f in frames]
    assert names == ["z.fits", "d1.fits", "f1.fts", "a.fit", "b.fits"]  # sorted by path
    by = {f.path.name: f for f in frames}
    b = by["b.fits"]
    assert b.type == FrameType.LIGHT and b.exposure == 120.0 and b.filter == "Ha"
    assert b.temperature == pytest.approx(-10.2) and b.gain == 100 and b.binning == (1, 1)
    assert b.shape == (20, 30) and b.bayer == "RGGB"
    assert by["d1.fits"].type == FrameType.DARK and by["d1.fits"].bayer is None
    assert by["f1.fts"].type == FrameType.FLAT and by["z.fits"].type == FrameType.BIAS
    # Files given directly and twice are taken once.
    again = scan_frames([s / "lights" / "a.fit", s / "lights"])
    assert [f.path.name for f in again] == ["a.fit", "b.fits"]


def test_shape_from_header_and_mixed_sizes(tmp_path):
    a = _write(tmp_path / "lights" / "a.fits", shape=(40, 60))
    b = _write(tmp_path / "lights" / "b.fits", shape=(41, 60))
    c = _write(tmp_path / "lights" / "c.fits", shape=(3, 40, 60), dtype=np.float32)
    frames = scan_frames([a, b, c])
    assert [f.shape for f in frames] == [(40, 60), (41, 60), (3, 40, 60)]
    assert frames[2].is_color and frames[0].width == 60 and frames[0].height == 40
    with pytest.raises(BadInputError) as err:
        check_same_shape(frames)
    assert err.value.path == str(b) and "60x41" in err.value.problem
    assert check_same_shape([frames[0], frames[2]]) == (40, 60)


def _bad_files(tmp_path):
    d = tmp_path / "lights"
    d.mkdir(parents=True, exist_ok=True)
    good = _write(d / "good.fits", IMAGETYP="Light")
    full = good.read_bytes()
    trunc = d / "truncated.fits"
    trunc.write_bytes(full[: 2880 + 400])          # header intact, pixels cut short
    text = d / "text.fits"
    text.write_text("this is not a FITS file\n" * 200)
    empty = d / "empty.fits"
    empty.write_bytes(b"")
    nodata = d / "nodata.fits"
    fits.PrimaryHDU(header=fits.Header({"IMAGETYP": "Light"})).writeto(nodata)
    unknown = tmp_path / "misc" / "unknown.fits"
    _write(unknown, IMAGETYP="Tricolor")
    return good, {"truncated": trunc, "text": text, "empty": empty, "nodata": nodata,
                  "unknown": unknown, "missing": d / "missing.fits"}


@pytest.mark.parametrize("case, phrase", [
    ("truncated", "truncated"), ("text", "not a FITS file"), ("empty", "empty file"),
    ("nodata", "no image data"), ("unknown", "unknown frame type"), ("missing", "not found"),
])
def test_scan_bad_input(case, phrase, tmp_path):
    good, bad = _bad_files(tmp_path)
    path = bad[case]
    with pytest.raises(BadInputError) as err:
        scan_frames([good, path])
    assert err.value.path == str(path)
    assert phrase in err.value.problem
    assert "\n" not in err.value.message
    lines = []
    frames = scan_frames([good, path], skip_bad=True, log=lines.append)
    assert [f.path for f in frames] == [good]
    assert len(lines) == 1 and str(path) in lines[0] and phrase in lines[0]


def test_scan_truncated_by_one_pixel_row(tmp_path):
    good = _write(tmp_path / "lights" / "g.fits", shape=(100, 50))
    data_end = 2880 + 100 * 50 * 2
    cut = tmp_path / "lights" / "cut.fits"
    cut.write_bytes(good.read_bytes()[: data_end - 100])
    with pytest.raises(BadInputError, match="truncated"):
        scan_frames([cut])
    # Missing only the final block padding is tolerated (some writers omit it).
    nopad = tmp_path / "lights" / "nopad.fits"
    nopad.write_bytes(good.read_bytes()[:data_end])
    assert scan_frames([nopad])[0].shape == (100, 50)


def test_empty_folder_is_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no image files"):
        scan_frames([tmp_path / "empty"])


def _info(t, exp=None, filt=None, temp=None, gain=None, binning=(1, 1), name="x"):
    from pathlib import Path
    return FrameInfo(path=Path(name), type=t, exposure=exp, filter=filt, temperature=temp,
                     binning=binning, gain=gain, shape=(10, 10), bayer=None, header=fits.Header())


def test_group_temperature_clusters():
    temps = [-10.4, -9.9, -9.0, -5.0, -4.2, 3.0, None]
    darks = [_info(FrameType.DARK, 300.0, temp=t, gain=100, name=f"d{i}")
             for i, t in enumerate(temps)]
    groups = group_frames(darks, temp_tolerance=1.0)
    got = {k.temperature: [f.path.name for f in v] for k, v in groups.items()}
    # -10.4, -9.9, -9.0 chain within 1.0 deg steps; -5.0 and -4.2 join; 3.0 alone.
    assert got == {round((-10.4 - 9.9 - 9.0) / 3, 1): ["d0", "d1", "d2"],
                   round((-5.0 - 4.2) / 2, 1): ["d3", "d4"], 3.0: ["d5"], None: ["d6"]}
    assert len(group_frames(darks, temp_tolerance=10.0)) == 2  # all temps in one + None


def test_group_by_exposure_filter_binning_gain():
    frames = [
        _info(FrameType.LIGHT, 120.0, "Ha", -10.0, 100, name="l1"),
        _info(FrameType.LIGHT, 120.0, "OIII", -10.0, 100, name="l2"),
        _info(FrameType.LIGHT, 60.0, "Ha", -10.0, 100, name="l3"),
        _info(FrameType.LIGHT, 120.0, "Ha", -10.5, 100, binning=(2, 2), name="l4"),
        _info(FrameType.LIGHT, 120.0, "Ha", -10.5, 100, name="l5"),
        _info(FrameType.DARK, 120.0, "Ha", -10.0, 100, name="d1"),
        _info(FrameType.DARK, 120.0, "OIII", -10.0, 100, name="d2"),   # filter ignored
        _info(FrameType.DARK, 120.0, None, -10.0, 200, name="d3"),     # gain differs
        _info(FrameType.BIAS, 0.0, None, -10.0, 100, name="b1"),
        _info(FrameType.BIAS, 0.001, "L", -10.0, 100, name="b2"),      # exposure ignored
        _info(FrameType.FLAT, 2.0, "Ha", 5.0, 100, name="f1"),
        _info(FrameType.FLAT, 3.5, "Ha", 15.0, 100, name="f2"),        # exposure/temp ignored
        _info(FrameType.FLAT, 2.0, "OIII", 5.0, 100, name="f3"),
    ]
    groups = group_frames(frames)
    named = {str(k): [f.path.name for f in v] for k, v in groups.items()}
    assert named == {
        "light 60s Ha -10.0C bin1x1 gain100": ["l3"],
        "light 120s Ha -10.2C bin1x1 gain100": ["l1", "l5"],
        "light 120s Ha -10.5C bin2x2 gain100": ["l4"],
        "light 120s OIII -10.0C bin1x1 gain100": ["l2"],
        "dark 120s -10.0C bin1x1 gain100": ["d1", "d2"],
        "dark 120s -10.0C bin1x1 gain200": ["d3"],
        "flat Ha bin1x1 gain100": ["f1", "f2"],
        "flat OIII bin1x1 gain100": ["f3"],
        "bias -10.0C bin1x1 gain100": ["b1", "b2"],
    }
    strict = group_frames(frames, strict=True)
    assert sum(len(v) for v in strict.values()) == len(frames)
    assert len([k for k in strict if k.type == FrameType.DARK]) == 3
    key = next(iter(groups))
    assert isinstance(key, GroupKey) and key.slug() == "light_60s_Ha_-10.0C_bin1x1_gain100"
    assert hash(frames[0]) == hash(_info(FrameType.LIGHT, 120.0, "Ha", -10.0, 100, name="l1"))


def test_real_seestar_frames(shared_data):
    frames = scan_frames([shared_data / "seestar_m94", shared_data / "seestar_ngc7023"])
    assert len(frames) == 20
    for f in frames:
        assert f.type == FrameType.LIGHT and f.exposure == 10.0 and f.filter == "IRCUT"
        assert f.gain == 80 and f.bayer == "GRBG" and f.shape == (1920, 1080)
        assert 15 <= f.temperature <= 35
    groups = group_frames(frames, temp_tolerance=2.0)
    assert sum(len(v) for v in groups.values()) == 20
    for key, members in groups.items():
        temps = sorted(m.temperature for m in members)
        assert all(b - a <= 2.0 for a, b in zip(temps, temps[1:]))
    # Uncooled sensor: a wide tolerance puts every light in one group.
    assert len(group_frames(frames, temp_tolerance=100.0)) == 1
    mono = scan_frames([shared_data / "mono"], default_type=FrameType.LIGHT)
    m51 = next(f for f in mono if f.path.name.startswith("m51"))
    assert m51.type == FrameType.LIGHT and m51.exposure == 600.0 and m51.shape == (512, 512)
