"""``draconis display FILE [-o PNG]``: quick-look pictures of real simulated files, checked pixel by pixel.

The picture maps each data pixel to a square block of PNG pixels (``scale`` per side), so the tests read
the PNG back and sample it: DQ-flagged pixels have the overlay colour and no other pixel has it; a circle
passes through the point one radius east of every OBJCAT source; GSAOI's four arrays sit where their
DETSEC and the mosaic geometry put them, with the gaps between them in the gap colour.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from matplotlib.image import imread

import draconis
from draconis.cli import main
from draconis.kernels.calib import NON_LINEAR
from draconis.report.quicklook import CIRCLE_COLOUR, DQ_COLOUR, GAP_COLOUR, data_to_png, picture_scale


def _is(png: np.ndarray, colour, tol: float = 0.02) -> np.ndarray:
    return np.all(np.abs(png[..., :3] - np.asarray(colour)) < tol, axis=-1)


def _centres(shape, scale, height=None):
    """PNG row and column of the centre of every data pixel of an image of ``shape`` at ``scale``."""
    ny, nx = shape
    height = height or ny
    y, x = np.mgrid[0:ny, 0:nx]
    rows = np.floor((height - 0.5 - y) * scale).astype(int)
    cols = np.floor((x + 0.5) * scale).astype(int)
    return rows, cols


@pytest.fixture(scope="module")
def sources_file(small_f2_run, tmp_path_factory):
    """The small run's stack with an OBJCAT: detectSources run on it alone (as `reduce -r detectSources`)."""
    import contextlib

    from draconis.reduce import Reduce

    work = tmp_path_factory.mktemp("display")
    image = small_f2_run.work / "S20200104S0075_image.fits"
    with contextlib.chdir(work):
        r = Reduce([str(image)], recipename="detectSources", scheduler="synchronous")
        r.report = False
        (out,) = r.runr()
    return work / out


def test_flagged_pixels_have_the_overlay_colour(small_f2_run, tmp_path, capsys):
    path = small_f2_run.work / "S20200104S0075_image.fits"
    png_path = tmp_path / "stack.png"
    assert main(["display", str(path), "-o", str(png_path)]) == 0
    assert str(png_path) in capsys.readouterr().out
    dq = fits.getdata(path, "DQ")
    ny, nx = dq.shape
    scale = picture_scale(nx, ny)
    png = imread(png_path)
    assert png.shape[:2] == (ny * scale, nx * scale) and scale > 1
    rows, cols = _centres(dq.shape, scale)
    magenta = _is(png, DQ_COLOUR)[rows, cols]
    flagged = (dq & ~np.uint16(NON_LINEAR)) != 0
    assert flagged.any() and (~flagged).any()
    np.testing.assert_array_equal(magenta, flagged)


def test_zscale_or_given_limits(small_f2_run, tmp_path):
    path = small_f2_run.work / "S20200104S0075_image.fits"
    sci, dq = fits.getdata(path, "SCI"), fits.getdata(path, "DQ")
    good = (dq & ~np.uint16(NON_LINEAR)) == 0
    lo, hi = np.percentile(sci[good], [10, 90])
    png_path = tmp_path / "limits.png"
    assert main(["display", str(path), "-o", str(png_path), "--limits", str(lo), str(hi), "--no-dq"]) == 0
    png = imread(png_path)
    rows, cols = _centres(sci.shape, picture_scale(*sci.shape[::-1]))
    grey = png[rows, cols, 0]
    expected = np.clip((sci - lo) / (hi - lo), 0, 1)
    # the grey colormap is linear: each pixel's grey level is its scaled value, to the 256-entry colour
    # table (up to 2/255) and the 8-bit PNG (0.5/255)
    assert np.max(np.abs(grey - expected)[np.isfinite(sci)]) < 2.5 / 255
    assert (expected == 0).any() and (expected == 1).any()


def test_sources_are_circled_at_their_catalogue_positions(sources_file, tmp_path):
    cat = fits.getdata(sources_file, "OBJCAT")
    assert len(cat) >= 5
    png_path = tmp_path / "sources.png"
    assert main(["display", str(sources_file), "-o", str(png_path)]) == 0
    ny, nx = fits.getdata(sources_file, "SCI").shape
    scale = picture_scale(nx, ny)
    green = _is(imread(png_path), CIRCLE_COLOUR)
    radius = np.clip(np.nan_to_num(np.asarray(cat["FWHM_IMAGE"], float), nan=3.0) * 1.5, 4.0, 30.0)
    hits = 0
    for x, y, r in zip(cat["X_IMAGE"] - 1, cat["Y_IMAGE"] - 1, radius):
        row, col = data_to_png(x + r, y, ny, scale)
        if 0 <= row < green.shape[0] and 0 <= col < green.shape[1]:
            window = green[max(row - 2, 0):row + 3, max(col - 2, 0):col + 3]
            hits += bool(window.any())
        # the centre of a circle is not painted
        crow, ccol = data_to_png(x, y, ny, scale)
        assert not green[crow, ccol] or radius.min() < 5
    assert hits == len(cat)
    # without sources no green at all
    assert main(["display", str(sources_file), "-o", str(tmp_path / "plain.png"), "--no-sources"]) == 0
    assert not _is(imread(tmp_path / "plain.png"), CIRCLE_COLOUR).any()


def test_gsaoi_arrays_in_their_physical_layout(tmp_path):
    """Each array filled with its own value shows up where DETSEC and the mosaic gaps place it."""
    from draconis.instruments.gsaoi import lookup
    from draconis.simulate import make_dataset

    info = make_dataset("gsaoi-galaxy", tmp_path / "raw", size=32, nframes=1, seed=1)
    raw = info.files["science"][0]
    marked = tmp_path / "marked.fits"
    with fits.open(raw) as hdul:
        for k, hdu in enumerate(hdul[1:]):
            hdu.data = np.full(hdu.data.shape, float(k), dtype=np.float32)
        hdul.writeto(marked)
    frame = draconis.open(marked)
    sections = frame.detector_section()
    png_path = tmp_path / "gsaoi.png"
    assert main(["display", str(marked), "-o", str(png_path), "--limits", "0", "3"]) == 0
    png = imread(png_path)
    # the layout: each array's DETSEC moved by its mosaic position's shift (lookup.ARRAY_GEOMETRY)
    corners = []
    for sec in sections:
        origin = (sec.x1 // 2048 * 2048, sec.y1 // 2048 * 2048)
        (sx, sy), _ = lookup.ARRAY_GEOMETRY[origin]
        corners.append((round(sx + sec.x1 - origin[0]), round(sy + sec.y1 - origin[1])))
    x0, y0 = min(c[0] for c in corners), min(c[1] for c in corners)
    corners = [(x - x0, y - y0) for x, y in corners]
    width = max(x for x, _ in corners) + 32
    height = max(y for _, y in corners) + 32
    assert width > 2 * 32 + 100 and height > 2 * 32 + 100   # the gaps are ~150 px wide
    scale = picture_scale(width, height)
    assert png.shape[:2] == (height * scale, width * scale)
    for k, (sec, (x, y)) in enumerate(zip(sections, corners)):
        # right-hand arrays (DETSEC x >= 2048) are to the right, upper ones above
        assert (x > 32) == (sec.x1 >= 2048) and (y > 32) == (sec.y1 >= 2048)
        row, col = data_to_png(x + 16, y + 16, height, scale)
        assert png[row, col, 0] == pytest.approx(k / 3, abs=2.5 / 255), (k, sec)
    gap_x, gap_y = min(x for x, _ in corners if x > 32) - 32, min(y for _, y in corners if y > 32) - 32
    # the middle of the cross between the arrays is gap
    row, col = data_to_png(32 + gap_x / 2, 32 + gap_y / 2, height, scale)
    assert _is(png, GAP_COLOUR)[row, col]


@pytest.mark.parametrize("argv, message", [
    (["--limits", "5", "1"], "--limits"),
    (["-o", "picture.jpg"], "PNG"),
])
def test_bad_requests_are_one_line_errors(small_f2_run, tmp_path, capsys, argv, message):
    path = small_f2_run.work / "S20200104S0075_image.fits"
    assert main(["display", str(path), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_file_is_an_error(tmp_path, capsys):
    assert main(["display", str(tmp_path / "nope.fits")]) == 1
    err = capsys.readouterr().err
    assert "nope.fits" in err and "Traceback" not in err
