"""GSAOI distortion-corrected mosaics against the simulator's truth (issue 11 item 5).

The simulator places every source through the static distortion of its array
(its own evaluation of the model), at each frame's actual pointing (pointing
errors of 0.1-0.3") and position angle; one frame is rotated by 3 degrees.
Dithers of 3.5" (more than the 3.2" gaps between the arrays) at 384-pixel
arrays.  The ``_skyCorrected`` inputs are made here from the raw frames with
prepare, addDQ, ADUToElectrons, addVAR, the true sky level subtracted and
detectSources: what disco receives, without the sky pipeline's own
residuals (the seed test, test_gsaoi_seed.py, runs the real chain).

Checked:
- every frame's WCS after adjustWCSToReference puts the true positions of the
  stars of all four arrays, corners included, within 0.05 px rms of where
  the reference's WCS puts them (relative astrometry; the rotated frame too);
- the disco stack made with a reference catalogue puts stars within 0.1 px
  of the catalogue; isolated stars' fluxes are within 1 % of the truth with
  no trend with distance from the field centre (the Jacobian: without it
  fluxes are 3 % low here); (SCI - 0) / sqrt(VAR) in empty regions has a
  standard deviation within 10 % of 1; the background has no step at the
  arrays' edges; the gaps are flagged no_data only where no frame covers;
- resampling reads, for an output band, only the input chunks its pixels
  fall on.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

import draconis
from draconis.distortion import project
from draconis.reduce.context import RunContext
from draconis.simulate import make_dataset
from draconis.simulate.geometry import tan_project
from draconis.simulate.instruments import instrument_model

SIZE = 384
NFRAMES = 8  # 5 on target (the first 9/16), 3 sky frames not written
ROTATED = "S20170505S0097"
EFFECTS = {"flat": False, "dark_current": False, "bias": False, "nonlinearity": False, "cosmic_rays": False,
           "bad_pixels": False, "sky_drift": False}
SCALE = 0.02  # arcsec per pixel of the arrays (nominal) and of disco's grid


@pytest.fixture(scope="module")
def sky_corrected(tmp_path_factory):
    """(paths of the _skyCorrected frames, truth directory)."""
    work = tmp_path_factory.mktemp("gsaoi_truth")
    info = make_dataset("gsaoi-galaxy", work / "raw", size=SIZE, nframes=NFRAMES, seed=11, effects=EFFECTS,
                        roles=("science",), position_angles={ROTATED: 3.0}, dither=3.5)
    sky = {r["file"]: float(r["sky_e"]) for r in Table.read(f"{info.truth_dir}/frames.ecsv")}
    ctx = RunContext({"main": [draconis.open(p) for p in info.files["science"]]}, workdir=work / "work",
                     outdir=work)
    ctx.run("prepare")
    ctx.run("addDQ", static_bpm=None)
    ctx.run("ADUToElectrons")
    ctx.run("addVAR", read_noise=True, poisson_noise=True)
    ctx.set_stream("main", [f.map_extensions(lambda e, s=np.float32(sky[f.stem + ".fits"]):
                                              e.with_planes(SCI=e.plane("SCI") - s)) for f in ctx.stream("main")])
    ctx.run("detectSources")
    written = ctx.run("writeOutputs", suffix="_skyCorrected", strip=True)
    paths = [ctx.path_of(f) for f in written]
    ctx.close(True)
    return paths, info.truth_dir, work


def _truth_pixels(frame, index, truth, frames_table, sources):
    """True 1-based pixel positions, on array ``index`` of ``frame``, of ``sources`` (ra, dec)."""
    row = frames_table[frames_table["file"] == frame.stem + ".fits"][0]
    arr = instrument_model("GSAOI", SIZE).arrays[index]
    xi, eta = tan_project(sources["ra"], sources["dec"], row["ra_pointing"], row["dec_pointing"])
    return arr.geometry.offsets_to_pix(xi, eta, float(row["pa"]))


def test_alignment_of_all_four_arrays_to_005_pixel(sky_corrected, tmp_path):
    paths, truth, _ = sky_corrected
    frames_table = Table.read(f"{truth}/frames.ecsv")
    sources = Table.read(f"{truth}/sources.ecsv")
    ctx = RunContext({"main": [draconis.open(p) for p in paths]}, workdir=tmp_path)
    aligned = ctx.run("adjustWCSToReference")
    assert all(f.phu["ALIGNMTH"] in ("sources", "reference") for f in aligned)
    ref_stem = aligned[0].phu["ALIGNREF"]
    centre = (float(aligned[0][0].header["CRVAL1"]), float(aligned[0][0].header["CRVAL2"]))
    truth_xy = np.column_stack(project(sources["ra"], sources["dec"], *centre))
    errors, corners = {}, {}
    for frame in aligned:
        err, corner = [], 0
        for k, ext in enumerate(frame.extensions):
            x, y = _truth_pixels(frame, k, truth, frames_table, sources)
            on = (x > 0.5) & (x < SIZE + 0.5) & (y > 0.5) & (y < SIZE + 0.5)
            ra, dec = ext.wcs.all_pix2world(x[on], y[on], 1)
            err.append((np.column_stack(project(ra, dec, *centre)) - truth_xy[on]) / SCALE)
            corner += int(np.sum(on & (np.minimum(np.minimum(x, SIZE - x), np.minimum(y, SIZE - y)) < SIZE / 8)))
        errors[frame.stem], corners[frame.stem] = np.concatenate(err), corner
    # every frame inherits the reference's pointing error; what is left is the relative error
    offset = np.median(errors[ref_stem], axis=0)
    for stem, err in errors.items():
        dev = err - offset
        rms = np.sqrt((dev ** 2).sum(axis=1).mean())
        assert rms < 0.05, f"{stem}: relative astrometry {rms:.3f} px rms"
        assert corners[stem] >= 20  # stars near the corners and edges of the arrays are among those checked
    assert ROTATED in errors and aligned[[f.stem for f in aligned].index(ROTATED)].phu["ALIGNMTH"] != "offsets"


@pytest.fixture(scope="module")
def stack(sky_corrected):
    """The disco stack of the frames with a reference catalogue (60 % of the stars, RA/Dec from the truth)."""
    paths, truth, work = sky_corrected
    sources = Table.read(f"{truth}/sources.ecsv")
    stars = sources[(sources["kind"] == "star") & (sources["field"] == "target")]
    pick = np.random.default_rng(5).random(len(stars)) < 0.6
    refcat = work / "refcat.ecsv"
    Table({"RAJ2000": stars["ra"][pick], "DEJ2000": stars["dec"][pick]}).write(refcat, overwrite=True)
    out = draconis.disco(paths, output=str(work / "stack.fits"), refcat=str(refcat), scheduler="threads",
                         workdir=str(work / "disco_work"))
    assert (work / "stack_report.html").is_file()  # the report beside the stack, wherever that is
    # the frames as disco aligned them (the same catalogue steps, which compute no pixels), for their footprints
    ctx = RunContext({"main": [draconis.open(p) for p in paths]}, workdir=work / "aligned_work")
    ctx.run("addReferenceCatalog", source=str(refcat))
    ctx.run("determineAstrometricSolution", initial=5.0, final=0.5, order=2)
    aligned = ctx.run("adjustWCSToReference", first_pass=3.0, match_radius=0.5, order=3)
    return draconis.open(out), paths, truth, aligned


def _isolated_stars(stack_frame, paths, truth, half):
    """Truth stars far from any other source, seen whole (or not at all) by every frame; (x, y, flux e-)."""
    sources = Table.read(f"{truth}/sources.ecsv")
    frames_table = Table.read(f"{truth}/frames.ecsv")
    x, y = stack_frame[0].wcs.all_world2pix(sources["ra"], sources["dec"], 0)
    kind = np.asarray(sources["kind"])
    reach = np.where(kind == "galaxy", 3 * np.asarray(sources["fwhm_arcsec"]) / SCALE,
                     np.where(kind == "saturated_star", 60.0, 2 * half + 6))
    dist = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) - reach[None, :]
    np.fill_diagonal(dist, np.inf)
    keep = (kind == "star") & (np.asarray(sources["field"]) == "target") & (dist.min(axis=1) > half)
    for path in paths:
        frame = draconis.open(path)
        whole, touched = np.zeros(len(x), bool), np.zeros(len(x), bool)
        for k in range(4):
            px, py = _truth_pixels(frame, k, truth, frames_table, sources)
            m = half + 4
            whole |= (px - m > 0.5) & (px + m < SIZE + 0.5) & (py - m > 0.5) & (py + m < SIZE + 0.5)
            touched |= (px + m > 0.5) & (px - m < SIZE + 0.5) & (py + m > 0.5) & (py - m < SIZE + 0.5)
        keep &= whole | ~touched
    t = float(frames_table["exptime"][0])
    return x[keep], y[keep], np.asarray(sources["flux_e_per_s"])[keep] * t


def _photometry(stack_frame, paths, truth, half=10):
    sci, var, dq = (np.asarray(stack_frame[0].plane(n), float) for n in ("SCI", "VAR", "DQ"))
    dq = dq.astype(int)
    x, y, flux = _isolated_stars(stack_frame, paths, truth, half)
    rows = []
    for xi, yi, f in zip(x, y, flux):
        r0, c0 = int(round(yi)), int(round(xi))
        if min(r0, c0) < half + 9 or r0 + half + 9 > sci.shape[0] or c0 + half + 9 > sci.shape[1]:
            continue
        yy, xx = np.mgrid[r0 - half:r0 + half + 1, c0 - half:c0 + half + 1]
        if (dq[yy, xx] & (4 | 16)).any():
            continue
        ay, ax = np.mgrid[r0 - half - 8:r0 + half + 9, c0 - half - 8:c0 + half + 9]
        ring = (np.hypot(ax - xi, ay - yi) >= half + 2) & (np.hypot(ax - xi, ay - yi) <= half + 7)
        ring &= dq[ay, ax] == 0
        cut = sci[yy, xx] - np.median(sci[ay[ring], ax[ring]])
        rows.append((cut.sum() / f, np.sqrt(var[yy, xx].sum()) / f, (cut * xx).sum() / cut.sum() - xi,
                     (cut * yy).sum() / cut.sum() - yi, f, np.hypot(xi - sci.shape[1] / 2, yi - sci.shape[0] / 2)))
    return np.array(rows)


def test_stack_astrometry_against_the_reference_catalogue(stack):
    frame, paths, truth, _ = stack
    rows = _photometry(frame, paths, truth)
    bright = rows[rows[:, 1] < 0.01]  # centroids of stars measured to 1 % are good to a few hundredths of a pixel
    assert len(bright) >= 15
    offset = np.median(bright[:, 2:4], axis=0)
    assert np.hypot(*offset) < 0.1, f"stack offset from the catalogue {offset} px"


def test_stack_fluxes_within_one_percent_without_radial_trend(stack):
    frame, paths, truth, _ = stack
    rows = _photometry(frame, paths, truth)
    ratio, err, radius = rows[:, 0], rows[:, 1], rows[:, 5]
    assert len(ratio) >= 30
    w = 1.0 / err ** 2
    mean = float((w * ratio).sum() / w.sum())
    assert mean == pytest.approx(1.0, abs=0.01)
    # no trend with distance from the field centre: a missing or wrong Jacobian shows as one (the slope's
    # error is scaled by the observed scatter: resampled pixels are correlated, so VAR sums underestimate it)
    (slope, _), cov = np.polyfit(radius / radius.max(), ratio, 1, w=1.0 / err, cov=True)
    assert abs(slope) < max(0.01, 3 * np.sqrt(cov[0, 0]))


def test_stack_background_noise_seams_and_gaps(stack):
    frame, paths, truth, aligned = stack
    ext = frame[0]
    sci, var, dq = (np.asarray(ext.plane(n), float) for n in ("SCI", "VAR", "DQ"))
    dq = dq.astype(int)
    sources = Table.read(f"{truth}/sources.ecsv")
    x, y = ext.wcs.all_world2pix(sources["ra"], sources["dec"], 0)
    near = np.zeros(sci.shape, bool)
    for xi, yi, k in zip(x, y, sources["kind"]):
        r = 40 if k != "star" else 18
        r0, c0 = int(round(yi)), int(round(xi))
        near[max(r0 - r, 0):max(r0 + r + 1, 0), max(c0 - r, 0):max(c0 + r + 1, 0)] = True
    empty = ~near & (dq == 0) & (var > 0)
    z = sci[empty] / np.sqrt(var[empty])
    assert empty.sum() > 1e5
    assert np.std(z) == pytest.approx(1.0, abs=0.1)
    assert abs(np.median(z)) < 0.05
    # no step at the arrays' edges: the background just inside and just outside each array of each frame
    # agree within their errors
    yy, xx = np.mgrid[0:sci.shape[0], 0:sci.shape[1]]
    steps = []
    for aligned_frame in aligned:
        for e in aligned_frame.extensions:
            ex, ey = np.asarray(e.wcs.all_pix2world([1, SIZE, 1, SIZE], [1, 1, SIZE, SIZE], 1))
            cx, cy = ext.wcs.all_world2pix(ex, ey, 0)
            x0, x1, y0, y1 = cx.min(), cx.max(), cy.min(), cy.max()
            for inside, outside in (((xx > x0 + 3) & (xx < x0 + 25), (xx < x0 - 3) & (xx > x0 - 25)),
                                    ((xx < x1 - 3) & (xx > x1 - 25), (xx > x1 + 3) & (xx < x1 + 25))):
                band = (yy > y0 + 30) & (yy < y1 - 30)
                a, b = sci[inside & band & empty], sci[outside & band & empty]
                if len(a) > 500 and len(b) > 500:
                    sigma = np.sqrt(np.median(var[empty]) * (1 / len(a) + 1 / len(b)))
                    steps.append((np.mean(a) - np.mean(b)) / sigma)
    assert len(steps) >= 4
    assert np.max(np.abs(steps)) < 5
    # no_data (16) exactly where no array of any frame lands: the dithers fill the gaps between arrays
    covered = np.zeros(sci.shape, bool)
    sub = (slice(None, None, 4), slice(None, None, 4))
    ra, dec = ext.wcs.all_pix2world(xx[sub].ravel(), yy[sub].ravel(), 0)
    for aligned_frame in aligned:
        for e in aligned_frame.extensions:
            px, py = e.wcs.all_world2pix(ra, dec, 0)
            covered[sub] |= ((px > 0.5) & (px < SIZE - 1.5) & (py > 0.5) & (py < SIZE - 1.5)).reshape(xx[sub].shape)
    flagged = (dq[sub] & 16) != 0
    assert not (flagged & covered[sub]).any()
    assert 0 < flagged.mean() < 0.3  # only the corners of the union of dithers
    # the gaps between the arrays of one frame are there (no_data in one resampled frame) and filled in the stack
    one = np.zeros(xx[sub].shape, bool)
    for e in aligned[0].extensions:
        px, py = e.wcs.all_world2pix(ra, dec, 0)
        one |= ((px > -0.5) & (px < SIZE - 0.5) & (py > -0.5) & (py < SIZE - 0.5)).reshape(xx[sub].shape)
    gap = ~one & covered[sub]
    assert gap.mean() > 0.05 and not (gap & flagged).any()


def test_band_task_reads_only_the_input_chunks_it_needs(sky_corrected, tmp_path):
    import dask

    paths, _, _ = sky_corrected
    with dask.config.set({"draconis.chunk_rows": 32}):
        frames = [draconis.open(p) for p in paths[:2]]
    ctx = RunContext({"main": frames}, workdir=tmp_path)
    ctx.run("adjustWCSToReference")
    out = ctx.run("resampleToCommonFrame")
    sci = out[1][0].plane("SCI")
    graph = dict(sci.__dask_graph__())
    total = 3 * 4 * (SIZE // 32)  # SCI, VAR, DQ chunks of the four arrays
    reads = []
    for key in dask.core.flatten(sci.__dask_keys__()):
        seen, todo, chunks = set(), [key], set()
        while todo:
            k = todo.pop()
            if k in seen or k not in graph:
                continue
            seen.add(k)
            name = k[0] if isinstance(k, tuple) else k
            if isinstance(name, str) and name.startswith("fits-") and isinstance(k, tuple):
                chunks.add(k)
            todo.extend(dask.core.get_dependencies(graph, k))
        reads.append(len(chunks))
    # each output band reads the input chunks its rows fall on: all bands together read each chunk about once
    # (twice where a chunk straddles two bands), where reading whole arrays would read each once per band
    nonempty = [r for r in reads if r]
    assert len(nonempty) >= 4
    assert max(nonempty) < 0.75 * total and sum(nonempty) < 1.6 * total
