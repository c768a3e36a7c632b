"""skyCorrect's sliding-window path equals its direct path on a simulated F2 sequence.

20 simulated F2 frames (96 px) calibrated by the real primitives (DQ with
the F2 illumination mask, saturation and non-linearity flags; VAR), a few
pixels NaN, associated with a 150 s window so windows slide along the
sequence and skies closer than 3" (the frame itself, frames at the same
dither position) are excluded. The two-pass block runs with object masks
from the first pass; then single passes cover the other modes: mean,
lmedian, asymmetric and reduced min/max rejection, zero/offset/reset
normalisations, apply_dq=False, max_skies/min_skies, frames with one or two
skies, save_sky.
"""
from __future__ import annotations

import glob
import logging

import dask
import dask.array as da
import numpy as np
import pytest
from dask.utils import key_split

import draconis
from draconis.frame import Frame
from draconis.io.zarr import stored_source
from draconis.errors import DescriptorError
from draconis.primitives.sky_window import WindowPlan, plan_windows, window_is_cheaper

NFRAMES, SIZE = 20, 96


def _in_memory(frame: Frame, rng) -> Frame:
    """The frame's planes computed once, chunked in 32-row bands, a few SCI pixels made NaN."""
    def plane(ext, name):
        a = ext.plane(name)
        return None if a is None else np.asarray(a)
    exts = []
    for ext in frame.extensions:
        sci = plane(ext, "SCI").astype(np.float32)
        sci[rng.integers(0, SIZE, 3), rng.integers(0, SIZE, 3)] = np.nan
        planes = {"SCI": sci, "VAR": plane(ext, "VAR"), "DQ": plane(ext, "DQ")}
        exts.append(ext.with_planes(**{k: da.from_array(v, chunks=(32, SIZE)) for k, v in planes.items()}))
    return frame.with_extensions(exts)


@pytest.fixture(scope="module")
def frames(tmp_path_factory, module_run_primitive):
    from draconis.simulate import make_dataset

    work = tmp_path_factory.mktemp("skywindow")
    make_dataset("f2-deep", work / "raw", size=SIZE, nframes=NFRAMES, seed=3)
    raw = [draconis.open(p) for p in sorted(glob.glob(str(work / "raw" / "*.fits")))]
    science = [f for f in raw if "IMAGE" in f.tags and not (f.tags & {"FLAT", "DARK", "CAL"})]
    ctx = module_run_primitive.context(streams={"main": science})
    with dask.config.set(scheduler="synchronous"):
        ctx.run("prepare")
        ctx.run("addDQ", static_bpm=None)
        ctx.run("ADUToElectrons")
        ctx.run("addVAR", read_noise=True, poisson_noise=True)
        rng = np.random.default_rng(11)
        calibrated = [_in_memory(f, rng) for f in ctx.stream("main")]
    return calibrated


@pytest.fixture(scope="module")
def with_masks(frames, module_run_primitive):
    """Skies with OBJMASKs from a first, direct pass (so both paths of the second pass use the same masks)."""
    ctx = module_run_primitive.context(streams={"main": frames})
    ctx.run("separateSky")
    ctx.run("associateSky", stream="sky", time=150.0)
    with dask.config.set({"draconis.sky_combine": "direct", "scheduler": "synchronous"}):
        ctx.run("skyCorrect", instream="sky", outstream="skysub", mask_objects=False)
        ctx.run("detectSources", stream="skysub", detect_minarea=5)
    masked = [f.with_extensions([e.with_planes(OBJMASK=d[0].plane("OBJMASK").persist()) for e in f.extensions])
              for f, d in zip(ctx.stream("sky"), ctx.stream("skysub"))]
    return ctx.stream("main"), masked


def sky_correct(runner, mode, main, skies, associate=None, **params):
    """associateSky + skyCorrect of ``main`` against ``skies`` with the given combine path; computed planes."""
    ctx = runner.context(streams={"main": main, "sky": skies})
    targets = ctx.run("associateSky", **{"time": 150.0, **(associate or {})})
    with dask.config.set({"draconis.sky_combine": mode, "scheduler": "synchronous"}):
        out = ctx.run("skyCorrect", **params)
        layers = set().union(*(f[0].plane("SCI").dask.layers for f in out))
        planes = da.compute(*[(f[0].plane("SCI"), f[0].plane("VAR"), f[0].plane("DQ")) for f in out])
        saved = da.compute(*[(f[0].plane("SCI"), f[0].plane("VAR"), f[0].plane("DQ"))
                             for f in ctx.stream("sky_stacks")])
    return targets, planes, saved, any(name.startswith("sky-window") for name in layers)


def masked_window_pass(runner, main, skies):
    """The window path with object masks on 2 x 3 MB workers (24-row bands); its output frames and planes."""
    with dask.config.set({"draconis.memory_limit": 3_000_000, "draconis.n_workers": 2}):
        ctx = runner.context(streams={"main": main, "sky": skies})
        ctx.run("associateSky", time=150.0)
        with dask.config.set({"draconis.sky_combine": "window", "scheduler": "synchronous"}):
            out = ctx.run("skyCorrect", mask_objects=True)
            return out, da.compute(*[(f[0].plane("SCI"), f[0].plane("VAR"), f[0].plane("DQ")) for f in out])


def assert_same(window, direct):
    for (s1, v1, d1), (s2, v2, d2) in zip(window, direct):
        scale = np.nanmax(np.abs(s2)) + 1.0
        np.testing.assert_allclose(s1, s2, rtol=0, atol=2e-6 * scale)  # float32 rounding of the sky
        np.testing.assert_allclose(v1, v2, rtol=2e-6, atol=0)
        np.testing.assert_array_equal(d1, d2)


def test_second_pass_with_object_masks_equals_the_direct_path(run_primitive, with_masks):
    main, skies = with_masks
    targets, window, _, used = sky_correct(run_primitive, "window", main, skies, mask_objects=True)
    _, direct, _, used_direct = sky_correct(run_primitive, "direct", main, skies, mask_objects=True)
    assert used and not used_direct
    plan = plan_windows(targets, [[{s.filename: s for s in skies}[n] for n in t.tables["SKYTABLE"]["SKYNAME"]]
                                  for t in targets])
    assert not plan.direct and len(set(plan.lo.tolist())) > 5  # windows slide along the sequence
    extra = [e.size - 1 for e in plan.excluded]  # beyond the frame itself: skies closer than 3"
    assert max(extra) >= 1 and plan.counts.min() >= 5
    dq = np.array([d for _, _, d in window]).astype(int)
    assert (dq & 64).any()  # the unilluminated corners, flagged in every sky, are compared too
    assert_same(window, direct)


def test_checkpointed_planes_are_read_inside_the_window_tasks(run_primitive, with_masks):
    """Stored SCI/VAR/DQ and object masks are read by the band tasks, in bands shorter than the stored chunks."""
    main, skies = with_masks
    ctx = run_primitive.context(streams={"main": main})
    with dask.config.set(scheduler="synchronous"):
        stored = ctx.run("flushPixels")  # one 96-row chunk per plane
        by_stem = {f.stem: f for f in stored}
        masks = ctx.keep_computed([by_stem[s.stem] for s in skies], "OBJMASK",
                                  ([np.asarray(s[0].plane("OBJMASK"))] for s in skies), "masks")
    assert masks is not None
    stored_skies = [by_stem[s.stem].with_extensions([by_stem[s.stem][0].with_planes(OBJMASK=m[0])])
                    for s, m in zip(skies, masks)]
    # a small worker budget: the window's bands (24 rows) cut the stored chunks, and the object masks'
    # dilation reaches across band edges
    out, window = masked_window_pass(run_primitive, stored, stored_skies)
    graph = out[0][0].plane("SCI").dask
    layer = next(name for name in graph.layers if name.startswith("sky-window"))
    bands = graph.layers[layer]
    heights = {k[3] for k in bands if isinstance(k, tuple)}
    assert len(heights) >= 3  # several bands in one 96-row stored chunk
    # the window tasks alone carry their name prefix: distributed estimates a task's duration (and whether
    # it is worth stealing for an idle worker) from its prefix, and the planes picked from a window task's
    # output take milliseconds where the window task takes seconds
    assert {k for k in graph if key_split(k) == "sky-window"} == {k for k in bands if isinstance(k, tuple)}
    # the window task's dependencies are the levels only: no rechunk, no read task, no mask dilation task;
    # and the levels read their samples themselves (the skies' with the stored masks dilated)
    assert graph.dependencies[layer] and all(d.startswith("sky-level") for d in graph.dependencies[layer])
    assert all(not graph.dependencies[d] for d in graph.dependencies[layer])
    # each band task is marked a data producer, so distributed queues it like a root task (next test)
    assert all(graph.layers[layer][k].data_producer for k in bands if isinstance(k, tuple))
    # on a real cluster the mark reaches the scheduler: with one worker thread, band tasks wait in the
    # scheduler's queue (a worker gets its next band once the writes of the last one took its slots)
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    class BandTransitions(SchedulerPlugin):
        def __init__(self):
            self.seen: list[str] = []

        def transition(self, key, start, finish, *args, **kwargs):
            if key_split(key) == "sky-window":
                self.seen.append(finish)

    plugin = BandTransitions()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        cluster.scheduler.add_plugin(plugin)
        on_cluster = client.compute([f[0].plane("SCI") for f in out], sync=True)
    assert "queued" in plugin.seen
    for got, (sci, _, _) in zip(on_cluster, window):
        np.testing.assert_array_equal(got, sci)
    _, direct, _, _ = sky_correct(run_primitive, "direct", main, skies, mask_objects=True)
    assert_same(window, direct)


def test_masks_transferred_from_a_stack_are_read_inside_the_window_tasks(run_primitive, with_masks):
    """The ultradeep third pass: masks from transferObjectMask are stored, and the band tasks read them.

    As lazy planes, every frame's transfer, dilation and OR into DQ were computed ahead of the band tasks
    and held (156 full-size frames: ~9 GiB spilled, a pass 3.7x longer than the one before it).
    """
    main, skies = with_masks
    ctx = run_primitive.context(streams={"main": main})
    with dask.config.set(scheduler="synchronous"):
        stored = ctx.run("flushPixels")
    # a "stack": one frame's pixels with its first-pass mask, the source the others' masks come from
    stack = stored[0].with_extensions([stored[0][0].with_planes(OBJMASK=skies[0][0].plane("OBJMASK"))])
    ctx = run_primitive.context(streams={"main": stored, "stacked": [stack]})
    with dask.config.set(scheduler="synchronous"):
        moved = ctx.run("transferObjectMask", source="stacked", interpolant="poly3")
    out, window = masked_window_pass(run_primitive, moved, moved)
    graph = out[0][0].plane("SCI").dask
    layer = next(name for name in graph.layers if name.startswith("sky-window"))
    # nothing but the levels ahead of the band tasks, and they read their samples themselves
    assert all(d.startswith("sky-level") for d in graph.dependencies[layer])
    assert all(not graph.dependencies[d] for d in graph.dependencies[layer])
    assert not any(name.startswith("transfer-mask") for name in graph.layers)
    assert all(stored_source(f[0].plane("OBJMASK")) is not None for f in moved)
    assert sum(int(np.asarray(f[0].plane("OBJMASK")).sum()) for f in moved) > 100  # objects to mask
    _, direct, _, used = sky_correct(run_primitive, "direct", moved, moved, mask_objects=True)
    assert not used
    assert_same(window, direct)


def test_a_worker_holds_one_band_result_at_a_time(run_primitive, with_masks):
    """On the LocalClusters draconis starts, a worker makes its next band only once the last one is used.

    With distributed's default worker saturation (two slots for a one-thread worker) a worker was sent
    its next band while making one and, Dask's order putting every band ahead of their consumers, ran
    it first: two band results held (three with work stealing), which spilled at full size.
    """
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    from draconis.cluster import SCHEDULER_SETTINGS

    main, skies = with_masks
    ctx = run_primitive.context(streams={"main": main})
    with dask.config.set({"scheduler": "synchronous", "draconis.chunk_rows": 32}):
        stored = ctx.run("flushPixels")
    # 32-row chunks and a budget that cuts them into 16-row bands: one segment of six band tasks, as a
    # full-size pass has one of 16. (With fewer than five, distributed takes the bands' consumers for
    # root tasks too, and queues them behind the next band.)
    with dask.config.set({"draconis.memory_limit": 2_000_000, "draconis.n_workers": 1}):
        ctx = run_primitive.context(streams={"main": stored, "sky": stored})
        ctx.run("associateSky", time=150.0)
        with dask.config.set({"draconis.sky_combine": "window"}):
            out = ctx.run("skyCorrect", mask_objects=False)
    # consumers that release each band as soon as its planes are used, as the checkpoint writes do
    sums = [f[0].plane(name).sum() for f in out for name in ("SCI", "VAR")]

    class HeldBands(SchedulerPlugin):
        def __init__(self):
            self.held, self.most, self.bands = 0, 0, set()

        def transition(self, key, start, finish, *args, **kwargs):
            if key_split(key) != "sky-window":
                return
            self.bands.add(key)
            if finish == "memory":
                self.held += 1
                self.most = max(self.most, self.held)
            elif start == "memory":
                self.held -= 1

    def most_held(settings) -> tuple[int, int]:
        plugin = HeldBands()
        with dask.config.set(settings), LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                                     dashboard_address=":0") as cluster, Client(cluster) as client:
            cluster.scheduler.add_plugin(plugin)
            got = client.compute(sums, sync=True)
        np.testing.assert_allclose(got, da.compute(*sums, scheduler="synchronous"), rtol=1e-6)
        return plugin.most, len(plugin.bands)

    most, bands = most_held(SCHEDULER_SETTINGS)
    assert bands == 6 and most == 1
    # distributed's default: the mechanism this guards against shows up on this graph too
    assert most_held({"distributed.scheduler.worker-saturation": 1.1})[0] >= 2


@pytest.mark.parametrize("params,associate", [
    ({"operation": "mean", "nlow": 2, "nhigh": 0}, {"max_skies": 4}),
    ({"operation": "lmedian", "scale": False, "zero": True, "scale_sky": False, "offset_sky": True}, None),
    # 2-3 skies a frame (min/max 3/3 reduced to what they allow), no DQ, the sky level added back, skies saved
    ({"nlow": 3, "nhigh": 3, "scale_sky": False, "reset_sky": True, "apply_dq": False, "save_sky": True},
     {"time": 20.0, "min_skies": 2, "max_skies": 3}),
    ({"operation": "mean"}, {"time": 0.0, "min_skies": 1}),  # one sky a frame
])
def test_other_modes_equal_the_direct_path(run_primitive, with_masks, params, associate, caplog):
    main, skies = with_masks
    _, window, saved_w, used = sky_correct(run_primitive, "window", main, skies, associate, mask_objects=True,
                                           **params)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _, direct, saved_d, _ = sky_correct(run_primitive, "direct", main, skies, associate, mask_objects=True,
                                            **params)
    reduced = [r.getMessage() for r in caplog.records if "rejection reduced" in r.getMessage()]
    assert len(reduced) == len(set(reduced))  # the reduced rejection is said once per sky count, not per frame
    if params.get("nlow") == 3:
        assert reduced
    assert used
    assert_same(window, direct)
    assert len(saved_w) == len(saved_d) == (NFRAMES if params.get("save_sky") else 0)
    assert_same(saved_w, saved_d)


def test_first_pass_without_masks_and_the_auto_choice(run_primitive, frames, caplog):
    ctx = run_primitive.context(streams={"main": frames})
    skies = ctx.run("separateSky")
    _, window, _, used = sky_correct(run_primitive, "window", skies, skies, mask_objects=False)
    _, direct, _, _ = sky_correct(run_primitive, "direct", skies, skies, mask_objects=False)
    assert used
    assert_same(window, direct)
    # "auto": frames with lists of their own take the window, even with 2-3 skies each; frames sharing one
    # list of dedicated skies (one stack for all) the direct combine; sigclip: the window cannot do it
    with caplog.at_level(logging.INFO):
        assert sky_correct(run_primitive, "auto", skies, skies, {"max_skies": 3}, mask_objects=False)[3]
        targets, _, _, used = sky_correct(run_primitive, "auto", skies[:4], skies[12:16], {"time": 3600.0, "distance": 0.0},
                                          mask_objects=False)
        assert len({tuple(t.tables["SKYTABLE"]["SKYNAME"]) for t in targets}) == 1 and not used
        assert not sky_correct(run_primitive, "window", skies, skies, mask_objects=False,
                               reject_method="sigclip")[3]
    assert "reject_method=sigclip: skies combined directly" in caplog.text


def test_auto_takes_the_window_for_long_sequences():
    """156 frames with ~70 skies each (the seed's F2 sequence), or 2 each: the window; one shared list: direct."""
    def plan_for(n, half):
        lo = np.array([max(0, i - half) for i in range(n)])
        hi = np.array([min(n, i + half + 1) for i in range(n)])
        excluded = [np.array([i]) for i in range(n)]
        return WindowPlan([], list(range(n)), lo, hi, excluded, [])

    class Named:
        def __init__(self, name):
            self.filename = name

    def lists(plan):
        return [[Named(str(f)) for f in range(a, b) if f != i] for i, a, b in zip(plan.order, plan.lo, plan.hi)]

    long_plan, short_plan = plan_for(156, 35), plan_for(156, 1)
    assert window_is_cheaper(long_plan, lists(long_plan), segment=30)
    assert window_is_cheaper(short_plan, lists(short_plan), segment=30)  # 2 skies each, every list its own
    # 8 frames sharing one list of 8 dedicated skies (one direct stack serves them all)
    shared = WindowPlan([], list(range(8)), np.zeros(8, np.int64), np.full(8, 8), [np.zeros(0, np.int64)] * 8, [])
    assert not window_is_cheaper(shared, [[Named(str(s)) for s in range(8)]] * 8, segment=30)


def test_skies_without_a_time_are_combined_directly():
    class Untimed:
        """A frame whose ut_datetime cannot be computed."""

        def __init__(self, name):
            self.filename = name

        def descriptor(self, name, **kwargs):
            raise DescriptorError(self.filename, f"no {name}")

    a, b = Untimed("a.fits"), Untimed("b.fits")
    plan = plan_windows([a, b], [[b], [a]])
    assert plan.direct == [0, 1] and not plan.order


def test_a_target_among_the_skies_is_copied_not_read_again(tmp_path, monkeypatch):
    """In a window task, a target's stored plane already read as a sky's is taken from the skies' cube.

    Copied from it, or, when every target is a sky, as views of it.
    """
    from draconis.frame import make_extension
    from draconis.io._tasks import StoredPlane
    from draconis.io.zarr import open_zarr, stored_source, write_zarr
    from draconis.primitives.sky_window import _filled

    rng = np.random.default_rng(4)
    planes = []
    for i in range(3):
        sci = rng.normal(size=(40, 16)).astype(np.float32)
        ext = make_extension(fits_header(), da.from_array(sci, chunks=(16, 16)), None, None, None, None)
        store = write_zarr(Frame(phu=fits_header(), extensions=(ext,), filename=f"f{i}.fits"), tmp_path / f"{i}.zarr")
        planes.append((sci, stored_source(open_zarr(store)[0].plane("SCI"))))
    skies = [p for _, p in planes[:2]]
    cube = _filled(skies, [None, None], 8, 30, np.float32)
    np.testing.assert_array_equal(cube, np.stack([s[8:30] for s, _ in planes[:2]]))
    reads = []
    original = StoredPlane.read_rows_into
    monkeypatch.setattr(StoredPlane, "read_rows_into",
                        lambda self, y0, y1, out: (reads.append(self.path), original(self, y0, y1, out)))
    targets = _filled([planes[1][1], planes[2][1]], [None, None], 8, 30, np.float32, read=(skies, cube))
    np.testing.assert_array_equal(targets, np.stack([s[8:30] for s, _ in planes[1:]]))
    assert reads == [planes[2][1].path]  # the sky among the targets was not read again
    # targets that are all skies (in any order): views of the skies' cube itself (written over in place)
    views = _filled([planes[1][1], planes[0][1]], [None, None], 8, 30, np.float32, read=(skies, cube))
    assert reads == [planes[2][1].path] and all(np.shares_memory(v, cube) for v in views)
    np.testing.assert_array_equal(np.stack(views), cube[::-1])


def fits_header():
    """An empty FITS header."""
    from astropy.io import fits

    return fits.Header()


def test_band_and_segment_plans_the_task_and_its_held_result():
    """The planner's bands and segments: task and held result within the budget, one segment when it fits."""
    from draconis.primitives.sky_window import SKY_BYTES, band_and_segment

    nx = ny = 2048
    budget = 1024 ** 3

    def need(rows, size, n, width, frame_bytes, shared):  # bytes of a task and the result it leaves
        skies = min(size + width, n)
        return rows * nx * (skies * SKY_BYTES * (2 if shared else 1) + size * (frame_bytes + (0 if shared else 10)))

    # the seed's sequence, every frame a sky of the others: one segment (each sky band read once)
    assert band_and_segment(70, 156, 512, ny, nx, budget, 4, 4, n_skies=156) == (128, 156)
    for n, shared, frame_bytes in ((156, False, 14), (1000, True, 4), (300, True, 28)):
        rows, size = band_and_segment(70, n, 512, ny, nx, budget, frame_bytes, 4, n_skies=n, shared=shared)
        assert rows >= 16 and 1 <= size <= n
        assert need(rows, size, n, 70, frame_bytes, shared) <= budget
        # the next taller band of the same segment would not fit, or would read the skies as often
        assert rows == 512 or need(2 * rows, size, n, 70, frame_bytes, shared) > budget or size < n
    # frames that are not skies keep their own planes: smaller segments than when they are
    assert band_and_segment(70, 156, 512, ny, nx, budget, 14, 4, n_skies=156, shared=False)[1] < 156
    # sky planes given as dependencies (12 bytes a sky pixel instead of 10) tip a plan that just fit
    tight = 156 * 128 * nx * (2 * SKY_BYTES + 4) + 1
    assert band_and_segment(70, 156, 512, ny, nx, tight, 4, 4, n_skies=156) == (128, 156)
    assert band_and_segment(70, 156, 512, ny, nx, tight, 4, 4, n_skies=156, sky_bytes=SKY_BYTES + 2) != (128, 156)
