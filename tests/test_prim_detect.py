"""detectSources on rendered star fields with known positions and fluxes; object-mask primitives."""
from __future__ import annotations


import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from scipy.special import erf

from draconis.frame import Frame, make_extension
from draconis.kernels.sky import disc
from draconis.io.zarr import stored_source
from draconis.testing import raise_if_dask_computes

PIXSCALE = 0.117
SIGMA = 1.4  # PSF sigma (px)
SKY = 800.0


def wcs_header(shape, crpix_shift=(0.0, 0.0)) -> fits.Header:
    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=shape[1] / 2 + crpix_shift[0],
               CRPIX2=shape[0] / 2 + crpix_shift[1], CRVAL1=150.0, CRVAL2=2.0, CD1_1=-PIXSCALE / 3600,
               CD1_2=0.0, CD2_1=0.0, CD2_2=PIXSCALE / 3600)
    return hdr


def render(stars, shape=(128, 128), *, seed=0, sky=SKY) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-integrated Gaussian stars (x, y 0-based, flux) on a flat sky, with Poisson noise; (sci, var)."""
    ny, nx = shape
    ex, ey = np.arange(nx + 1) - 0.5, np.arange(ny + 1) - 0.5
    image = np.full(shape, sky)
    for x, y, flux in stars:
        fx = np.diff(0.5 * erf((ex - x) / (np.sqrt(2) * SIGMA)))
        fy = np.diff(0.5 * erf((ey - y) / (np.sqrt(2) * SIGMA)))
        image += flux * np.outer(fy, fx)
    rng = np.random.default_rng(seed)
    sci = rng.poisson(image).astype(np.float32)
    return sci, image.astype(np.float32)


def make_frame(sci, var=None, dq=None, *, name="N20160102S0100", crpix_shift=(0.0, 0.0), chunks=(32, -1)):
    phu = fits.Header()
    phu.update(INSTRUME="NIRI", TELESCOP="Gemini-North", OBSTYPE="OBJECT", ORIGNAME=f"{name}.fits")
    phu["DATE-OBS"] = "2016-01-02"
    phu["UT"] = "10:00:00.0"
    planes = [None if a is None else da.from_array(a, chunks=chunks) for a in (sci, var, dq)]
    ext = make_extension(wcs_header(sci.shape, crpix_shift), *planes)
    return Frame(phu=phu, extensions=(ext,), filename=f"{name}.fits")


STARS = [(30.3, 40.7, 20000.0), (90.1, 20.2, 12000.0), (64.5, 100.9, 30000.0), (110.2, 75.6, 8000.0),
         (20.8, 110.4, 15000.0)]


@pytest.fixture(scope="module")
def detected(module_run_primitive):
    frames = [make_frame(*render(STARS, seed=s), name=f"N20160102S{100 + s:04d}") for s in range(2)]
    with raise_if_dask_computes(max_computes=2):  # for all frames at once: the checkpoint write, then detection
        out = module_run_primitive("detectSources", frames)
    return frames, out


def match(cat, stars):
    x, y = np.asarray(cat["X_IMAGE"]) - 1, np.asarray(cat["Y_IMAGE"]) - 1
    rows = []
    for sx, sy, flux in stars:
        d = np.hypot(x - sx, y - sy)
        rows.append((int(np.argmin(d)), float(d.min()), flux))
    return rows


def test_positions_within_a_fifth_of_a_pixel_and_fluxes_consistent(detected):
    _, out = detected
    for frame in out:
        cat = frame[0].objcat
        assert len(cat) == len(STARS)
        for row, dist, flux in match(cat, STARS):
            assert dist < 0.2
            measured, err = cat["FLUX_AUTO"][row], cat["FLUXERR_AUTO"][row]
            assert abs(measured - flux) < max(4 * err, 0.05 * flux)
            # r=5 px holds ~99.8 % of the PSF
            assert abs(cat["FLUX_APER"][row] - flux) < max(4 * cat["FLUXERR_APER"][row], 0.03 * flux)
            assert abs(cat["FWHM_IMAGE"][row] - 2.3548 * SIGMA) < 0.6
            assert cat["ELLIPTICITY"][row] < 0.15
            assert cat["CLASS_STAR"][row] > 0.5
            assert abs(cat["BACKGROUND"][row] - SKY) < 20
        assert set(cat["FLAGS"]) == {0}
        assert np.all(np.diff(cat["NUMBER"]) == 1) and cat["NUMBER"][0] == 1


def test_world_coordinates_follow_the_wcs(detected):
    _, out = detected
    cat = out[0][0].objcat
    ra, dec = out[0][0].wcs.all_pix2world(cat["X_IMAGE"], cat["Y_IMAGE"], 1)
    np.testing.assert_allclose(cat["X_WORLD"], ra, atol=1e-9)
    np.testing.assert_allclose(cat["Y_WORLD"], dec, atol=1e-9)
    np.testing.assert_allclose(cat["FWHM_WORLD"], cat["FWHM_IMAGE"] * PIXSCALE / 3600, rtol=1e-3)


def test_objmask_is_a_lazy_plane_covering_the_sources(detected):
    frames, out = detected
    objmask = out[0][0].plane("OBJMASK")
    assert isinstance(objmask, da.Array) and objmask.dtype == np.uint8
    assert objmask.chunks == out[0][0].plane("SCI").chunks  # aligned with the (checkpointed) SCI it masks
    mask = objmask.compute()
    for x, y, _ in STARS:
        assert mask[int(round(y)), int(round(x))] == 1
    assert 0.005 < mask.mean() < 0.1  # the stars' cores, not the sky
    assert out[0].filename == "N20160102S0100_sourcesDetected.fits"
    assert frames[0][0].objcat is None and frames[0][0].plane("OBJMASK") is None


def test_catalog_false_gives_the_same_mask_and_no_catalogue(detected, run_primitive, caplog):
    # the first sky pass only keeps the skies' masks: detectSources(catalog=False) skips the measurements
    frames, out = detected
    close = [(60.0, 64.0, 20000.0), (66.5, 64.0, 15000.0)]  # a pair that deblends: the mask is after deblending
    frames = frames + [make_frame(*render(close, seed=4), name="N20160102S0107")]
    full = out + run_primitive("detectSources", frames[2:], detect_minarea=5)
    with caplog.at_level("INFO"):
        masks_only = run_primitive("detectSources", frames[:2], catalog=False)
        masks_only += run_primitive("detectSources", frames[2:], catalog=False, detect_minarea=5)
    assert any("object mask only" in r.getMessage() for r in caplog.records)
    for a, b in zip(full, masks_only):
        assert b[0].objcat is None
        np.testing.assert_array_equal(np.asarray(b[0].plane("OBJMASK")), np.asarray(a[0].plane("OBJMASK")))
        assert np.asarray(b[0].plane("OBJMASK")).sum() > 50
    assert (np.asarray(full[2][0].objcat["FLAGS"]) & 2).any()  # the pair was deblended


def test_mask_true_replaces_flagged_pixels(run_primitive):
    sci, var = render(STARS[:2], seed=3)
    dq = np.zeros(sci.shape, np.uint16)
    sci[60:64, 60:64] += 5000.0  # a flagged blob (bad pixels)
    dq[60:64, 60:64] = 1
    frame = make_frame(sci, var, dq)
    unmasked = run_primitive("detectSources", [frame], mask=False)[0][0].objcat
    masked = run_primitive("detectSources", [frame], mask=True)[0][0].objcat
    assert len(unmasked) == 3 and len(masked) == 2
    blob = np.argmin(np.hypot(unmasked["X_IMAGE"] - 62.5, unmasked["Y_IMAGE"] - 62.5))
    assert unmasked["FLAGS"][blob] & 1


def test_close_pair_is_deblended(run_primitive):
    pair = [(60.0, 64.0, 20000.0), (66.5, 64.0, 15000.0)]
    frame = make_frame(*render(pair, seed=4))
    cat = run_primitive("detectSources", [frame], detect_minarea=5)[0][0].objcat
    assert len(cat) == 2
    assert all(cat["FLAGS"] & 2)
    assert max(d for _, d, _ in match(cat, pair)) < 0.5


def test_empty_field_gives_empty_catalog_and_mask(run_primitive):
    sci, var = render([], seed=5)
    out = run_primitive("detectSources", [make_frame(sci, var)], detect_thresh=5.0)
    assert len(out[0][0].objcat) == 0
    assert out[0][0].plane("OBJMASK").sum().compute() == 0


# -- mask primitives ---------------------------------------------------------
def mask_frame(points, shape=(64, 64), *, crpix_shift=(0.0, 0.0), name="N20160102S0200"):
    sci = np.zeros(shape, np.float32)
    frame = make_frame(sci, None, np.zeros(shape, np.uint16), crpix_shift=crpix_shift, name=name,
                       chunks=(16, -1))
    mask = np.zeros(shape, np.uint8)
    for x, y in points:
        mask[y, x] = 1
    ext = frame[0].with_planes(OBJMASK=da.from_array(mask, chunks=(16, -1)))
    return frame.with_extensions([ext])


def test_dilate_object_mask_with_a_disc_once(run_primitive):
    frame = mask_frame([(30, 15), (5, 0)])  # one near a chunk boundary, one at the edge
    with raise_if_dask_computes():
        out = run_primitive("dilateObjectMask", [frame], dilation=2.0)
    mask = out[0][0].plane("OBJMASK").compute()
    expected = np.zeros((64, 64), np.uint8)
    foot = disc(2.0).astype(np.uint8)
    assert foot.sum() == 13
    expected[13:18, 28:33] |= foot
    expected[0:3, 3:8] |= foot[2:]
    np.testing.assert_array_equal(mask, expected)
    again = run_primitive("dilateObjectMask", out, dilation=2.0)
    assert again[0] is out[0]  # not dilated twice
    twice = run_primitive("dilateObjectMask", out, dilation=2.0, repeat=True)
    assert twice[0][0].plane("OBJMASK").sum().compute() > mask.sum()


def test_add_object_mask_to_dq_sets_bit_one(run_primitive):
    frame = mask_frame([(10, 10), (40, 50)])
    dq = np.zeros((64, 64), np.uint16)
    dq[10, 10] = 4
    frame = frame.with_extensions([frame[0].with_planes(DQ=da.from_array(dq, chunks=(16, -1)))])
    with raise_if_dask_computes():
        out = run_primitive("addObjectMaskToDQ", [frame])
    result = out[0][0].plane("DQ").compute()
    assert result[10, 10] == 5 and result[50, 40] == 1 and result.sum() == 6
    assert out[0][0].plane("DQ").dtype == np.uint16


@pytest.mark.parametrize("interpolant", ["nearest", "linear", "poly3"])
def test_transfer_object_mask_follows_the_wcs(run_primitive, interpolant):
    # the stack's mask has a 5x5 block at x 20..24, y 30..34; the target frame's pixel grid is
    # shifted by CRPIX (+3, -2): the same sky lands at x+3, y-2
    stack = mask_frame([], name="N20160102S0300")
    block = np.zeros((64, 64), np.uint8)
    block[30:35, 20:25] = 1
    stack = stack.with_extensions([stack[0].with_planes(OBJMASK=da.from_array(block, chunks=(64, 64)))])
    target = mask_frame([], crpix_shift=(3.0, -2.0), name="N20160102S0301")
    ctx = run_primitive.context(streams={"stacked": [stack]})
    # one computation: the masks are computed and written to the work directory band by band, and the
    # output reads them back (the sky passes that use them read them inside their band tasks)
    with raise_if_dask_computes(max_computes=1):
        out = run_primitive("transferObjectMask", [target], ctx, source="stacked", interpolant=interpolant,
                            dilation=0.0)
    assert stored_source(out[0][0].plane("OBJMASK")) is not None
    mask = out[0][0].plane("OBJMASK").compute()
    expected = np.zeros((64, 64), np.uint8)
    expected[28:33, 23:28] = 1
    if interpolant == "nearest":
        np.testing.assert_array_equal(mask, expected)
    else:  # interpolation spreads at most one pixel beyond the block
        assert np.all(mask[expected == 1] == 1)
        assert mask.sum() <= ndilate(expected).sum()
    dilated = run_primitive("transferObjectMask", [target], ctx, source="stacked", interpolant="nearest")
    assert dilated[0][0].plane("OBJMASK").sum().compute() > expected.sum()
    assert dilated[0].filename.endswith("_objmaskTransferred.fits")


@pytest.mark.parametrize("dilation", [1.5, 2.5])
def test_transferred_mask_in_row_bands_equals_the_whole_mask_dilated(run_primitive, dilation):
    # each task computes its 16-row band and the rows the dilation reaches beyond it: together they are
    # the whole transferred mask dilated at once (zeros beyond the edges), objects across band edges too;
    # stored by the runner in the frame's own row chunks, so a sky pass reads it like any checkpoint plane
    from draconis.kernels.detect import spline_coefficients, transfer_mask_tile
    from draconis.kernels.sky import dilate_mask

    stack = mask_frame([], name="N20160102S0300")
    block = np.zeros((64, 64), np.uint8)
    block[13:19, 20:26] = 1  # across the 16-row band edge in the target
    block[29:33, 40:43] = 1
    block[0:2, 5:8] = 1  # at the top edge
    stack = stack.with_extensions([stack[0].with_planes(OBJMASK=da.from_array(block, chunks=(64, 64)))])
    target = mask_frame([], crpix_shift=(3.4, -2.3), name="N20160102S0301")
    ctx = run_primitive.context(streams={"stacked": [stack]})
    out = run_primitive("transferObjectMask", [target], ctx, source="stacked", interpolant="poly3",
                        dilation=dilation)
    plane = out[0][0].plane("OBJMASK")
    assert stored_source(plane) is not None and plane.chunks == target[0].plane("SCI").chunks
    whole = transfer_mask_tile([(spline_coefficients(block, 3), stack[0].wcs)], target[0].wcs, (0, 64, 0, 64),
                               order=3, threshold=0.01, shape=(64, 64))
    expected = dilate_mask(whole, dilation)
    assert expected[14:18].any() and expected.sum() > whole.sum()
    np.testing.assert_array_equal(plane.compute(), expected)


def ndilate(mask):
    from scipy import ndimage
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3)))


def test_detection_kernel_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    from draconis.kernels.detect import detect_array

    images = [render(STARS, seed=10 + i)[0] for i in range(2)]
    serial = [detect_array(img)[0] for img in images]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda i: detect_array(images[i % 2])[0], range(4)))
    for i, cat in enumerate(threaded):
        np.testing.assert_array_equal(cat["X_IMAGE"], serial[i % 2]["X_IMAGE"])
        np.testing.assert_array_equal(cat["FLUX_AUTO"], serial[i % 2]["FLUX_AUTO"])


def test_object_masks_are_kept_on_disk_not_carried_in_graphs(two_dask_workers, run_primitive):
    # A sky pass over a long sequence refers to every frame's mask: embedded in its graph, the 156 packed
    # 2048^2 masks of the seed made an 81 MB graph. The runner stores them; graphs read them back.
    import gc
    import os
    import pickle

    from dask.highlevelgraph import HighLevelGraph

    from draconis.cluster import execution
    from draconis.kernels.detect import detect_array

    stars = [(x + 128 * i, y + 128 * j, f) for x, y, f in STARS for i in range(8) for j in range(8)]
    sci, var = render(stars, shape=(1024, 1024), seed=11)
    frame = make_frame(sci, var, chunks=(256, -1))
    ctx = run_primitive.context()
    with execution(two_dask_workers):  # detected on the workers, stored by the client, read by the workers
        (found,) = run_primitive("detectSources", [frame], ctx)
        objmask = found[0].plane("OBJMASK")
        graph = dict(HighLevelGraph.merge(objmask.__dask_graph__()))
        assert len(pickle.dumps(graph)) < 1024 * 1024 // 8 // 4  # well under the packed mask itself (128 KiB)
        assert objmask.chunks == found[0].plane("SCI").chunks
        on_cluster = np.asarray(objmask)
        planes = [None if a is None else np.asarray(a) for a in map(found[0].plane, ("SCI", "VAR", "DQ"))]
    # the detection kernel's segmentation with the step's parameters, every bright star's core in it
    from draconis.primitives.detect import _detect_kwargs
    from draconis.primitives.registry import get_primitive

    params = ctx.resolve(get_primitive("detectSources"), warn=False)
    _, segmentation = detect_array(*planes, **_detect_kwargs(found, 0, params))
    np.testing.assert_array_equal(on_cluster, segmentation.astype(np.uint8))
    assert all(on_cluster[int(round(y)), int(round(x))] for x, y, f in stars if f >= 12000)
    # the masks are a checkpoint of the run: kept while a frame reads them, deleted once none does
    (masks,) = [r.directory for r in ctx.checkpoints.records if r.label == "detectSources_masks"]
    assert masks not in ctx.checkpoints.release()
    assert os.path.isdir(masks)
    ctx.set_stream("main", [])
    del found, objmask, graph
    gc.collect()
    assert masks in ctx.checkpoints.release()
    assert not os.path.exists(masks)
