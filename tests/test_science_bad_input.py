"""Bad input in the science imaging path, end to end through draconis.Reduce and ``draconis reduce`` (issue 6).

Each case runs the F2 default science recipe (dark and flat correction
skipped) on a small simulated sequence and checks that draconis says what
happened and what it did instead, and never writes a silently wrong stack:

* frames of two filters in one reduction: an error naming the odd file and
  its filter (through the command line: exit status 1, one line on stderr,
  no output written, inputs unchanged);
* F2 and NIRI files in one list: an error naming the NIRI file;
* fewer frames than ``associateSky:min_skies``: a warning per frame saying how
  many skies were used instead; the stack is made from every frame;
* no sources to align on: a warning naming the fallback to the telescope
  offsets; every frame is stacked;
* one frame whose every pixel is saturated, or NaN: a warning naming it and
  saying it was left out; the stack equals, within noise, the stack of the
  other frames; every frame bad: an error, nothing written.

stackFrames' own checks are also tested without the runner: mixed filters in
a user recipe that stacks without aligning, and the unusable-frame rule
(NaN everywhere, every pixel bad_pixel, non_linear kept, ``apply_dq=False``,
one compute, frames not on a common grid left lazy).

Raw files are only ever copied (with astropy) before being altered.
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import draconis
from draconis.errors import InputError

SIZE = 128
NFRAMES = 4
SEED = 3
SKIP_CALS = [("darkCorrect:do_cal", "skip"), ("flatCorrect:do_cal", "skip")]
#: F2's saturation level in ADU (the simulator clips raw data there too).
F2_SATURATION_ADU = 35000.0
OTHER_FILTER = "J_G0802"


# ---------------------------------------------------------------- helpers
def _simulate(where: Path, name: str = "f2-deep", **kw) -> list[Path]:
    from draconis.simulate import make_dataset

    make_dataset(name, where, size=SIZE, seed=SEED, **kw)
    files = sorted(p for p in where.rglob("*.fits") if "truth" not in p.parts)
    tags = {p: draconis.open(str(p)).tags for p in files}
    return [p for p in files if "IMAGE" in tags[p] and not tags[p] & {"CAL", "FLAT", "DARK"}]


@pytest.fixture(scope="module")
def science(tmp_path_factory) -> list[Path]:
    """The four raw F2 science frames of a simulated deep field (never modified by any test)."""
    files = _simulate(tmp_path_factory.mktemp("raw"), nframes=NFRAMES)
    assert len(files) == NFRAMES
    return files


@pytest.fixture
def warnings_seen():
    """Warning records of the 'draconis' logger (it does not propagate to the root, so caplog cannot)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("draconis")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _messages(records) -> list[str]:
    return [r.getMessage() for r in records]


def _copy(files, where: Path, edit=None) -> list[Path]:
    """Copies of ``files`` in ``where``; ``edit(index, hdulist)`` may change a copy before it is written."""
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(files):
        dst = where / Path(src).name
        with fits.open(src) as hdul:
            if edit is not None:
                edit(i, hdul)
            hdul.writeto(dst)
        out.append(dst)
    return out


def _digests(files) -> dict[str, str]:
    return {str(f): hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}


def _reduce(files, run_dir: Path, monkeypatch, extra=()) -> list[str]:
    from draconis.reduce import Reduce

    run_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(run_dir)
    r = Reduce([str(f) for f in files], uparms=[*SKIP_CALS, *extra], scheduler="synchronous")
    return [str(run_dir / p) if not Path(p).is_absolute() else p for p in r.runr()]


def _image(outputs) -> draconis.Frame:
    (path,) = [p for p in outputs if p.endswith("_image.fits")]
    return draconis.open(path)


def _fits_written(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if p.suffix in (".fits", ".zarr") or p.name == ".draconis")


def _planes(frame):
    ext = frame[0]
    return (np.asarray(ext.plane("SCI"), float), np.asarray(ext.plane("VAR"), float),
            np.asarray(ext.plane("DQ")), ext.wcs)


def _set_filter(index: int, hdul) -> None:
    if index % 2 == 1:
        hdul[0].header["FILTER1"] = OTHER_FILTER


def _saturate(which: int):
    def edit(index: int, hdul) -> None:
        if index == which or which < 0:
            hdul[1].data = np.full_like(hdul[1].data, F2_SATURATION_ADU)
    return edit


def _blank(which: int):
    """Every pixel of frame ``which`` (of every frame if negative) NaN."""
    def edit(index: int, hdul) -> None:
        if index == which or which < 0:
            hdul[1].data = np.full(hdul[1].data.shape, np.nan, np.float32)
    return edit


# ---------------------------------------------------------------- (a) two filters
def test_two_filters_error_names_the_file_and_filter(science, tmp_path, monkeypatch):
    inputs = _copy(science, tmp_path / "in", _set_filter)
    before = _digests(inputs)
    with pytest.raises(InputError) as err:
        _reduce(inputs, tmp_path / "run", monkeypatch)
    message = str(err.value)
    assert inputs[1].name in message and OTHER_FILTER in message and "K-red" in message
    assert "\n" not in message
    assert _fits_written(tmp_path / "run") == []
    assert _digests(inputs) == before


def test_two_filters_cli_exits_non_zero_with_one_line(science, tmp_path):
    inputs = _copy(science, tmp_path / "in", _set_filter)
    before = _digests(inputs)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    exe = Path(sys.executable).with_name("draconis")
    cmd = [str(exe), "reduce", *map(str, inputs), "-p", "darkCorrect:do_cal=skip", "flatCorrect:do_cal=skip",
           "--logfile", str(tmp_path / "reduce.log")]
    done = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert inputs[1].name in lines[0] and OTHER_FILTER in lines[0]
    assert _fits_written(run_dir) == []
    assert not list(tmp_path.rglob("*_image.fits"))
    assert _digests(inputs) == before


# ---------------------------------------------------------------- (b) two instruments
def test_f2_and_niri_in_one_list(science, tmp_path):
    niri = _simulate(tmp_path / "niri", "niri-extended", nframes=1)[0]
    assert "NIRI" in draconis.open(str(niri)).tags
    inputs = [*science[:2], niri]
    before = _digests(inputs)
    exe = Path(sys.executable).with_name("draconis")
    cmd = [str(exe), "reduce", *map(str, inputs), "--logfile", str(tmp_path / "reduce.log")]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert niri.name in lines[0] and "NIRI" in lines[0] and "F2" in lines[0]
    assert not list(tmp_path.glob("*_image.fits")) and not (tmp_path / ".draconis").exists()
    assert _digests(inputs) == before


# ---------------------------------------------------------------- (c) too few frames for min_skies
def test_min_skies_larger_than_the_sequence(science, tmp_path, monkeypatch, warnings_seen):
    outputs = _reduce(science, tmp_path, monkeypatch, extra=[("associateSky:min_skies", "8")])
    said = _messages(warnings_seen)
    for path in science:
        mine = [m for m in said if path.stem in m and "min_skies=8" in m]
        # the frame, the shortfall and what was used instead: every other frame of the sequence
        assert mine and all(f"only {NFRAMES - 1} sky candidate" in m and f"using all {NFRAMES - 1}" in m
                            for m in mine), said
    stack = _image(outputs)
    assert stack.phu["NCOMBINE"] == NFRAMES


# ---------------------------------------------------------------- (d) no sources to align on
def test_no_sources_falls_back_to_telescope_offsets(tmp_path, monkeypatch, warnings_seen):
    blank = _simulate(tmp_path / "raw", nframes=NFRAMES, effects={"sources": False})
    outputs = _reduce(blank, tmp_path / "run", monkeypatch)
    said = _messages(warnings_seen)
    fallback = [m for m in said if m.startswith("adjustWCSToReference") and "telescope offsets" in m]
    assert len(fallback) == 1 and "fallback='offsets'" in fallback[0]
    # every frame but the reference is named
    assert sum(p.stem in fallback[0] for p in blank) == NFRAMES - 1
    # the counts cannot be matched on sources either: the exposure-time ratio is used, and said so
    assert any("scaleCountsToReference" in m and "exposure-time ratio" in m for m in said)
    stack = _image(outputs)
    assert stack.phu["NCOMBINE"] == NFRAMES
    sci, var, dq, _ = _planes(stack)
    good = (dq == 0) & (var > 0)
    # the grid is the union of the dithers, and the empty field is consistent with zero
    assert max(sci.shape) > SIZE and good.mean() > 0.3
    z = sci[good] / np.sqrt(var[good])
    assert abs(np.median(z)) < 0.5 and np.std(z) == pytest.approx(1.0, abs=0.25)


# ---------------------------------------------------------------- (e) a frame with every pixel bad
@pytest.fixture(scope="module")
def without_bad_frame(science, tmp_path_factory):
    """The stack of the sequence without its second frame (the one the next test saturates)."""
    run_dir = tmp_path_factory.mktemp("three")
    mp = pytest.MonkeyPatch()
    try:
        outputs = _reduce([p for i, p in enumerate(science) if i != 1], run_dir, mp)
    finally:
        mp.undo()
    return _image(outputs)


@pytest.mark.parametrize("spoil", [_saturate, _blank], ids=["saturated", "all-NaN"])
def test_saturated_frame_is_left_out_and_named(spoil, science, without_bad_frame, tmp_path, monkeypatch,
                                                warnings_seen):
    inputs = _copy(science, tmp_path / "in", spoil(1))
    outputs = _reduce(inputs, tmp_path / "run", monkeypatch)
    said = _messages(warnings_seen)
    left_out = [m for m in said if m.startswith("stackFrames") and inputs[1].stem in m]
    assert len(left_out) == 1 and "every pixel is flagged" in left_out[0] and "left out" in left_out[0]
    stack = _image(outputs)
    assert stack.phu["NCOMBINE"] == NFRAMES - 1
    combined = {stack.phu.get(f"IMCMB{i:03d}") for i in range(1, NFRAMES + 1)}
    assert inputs[1].name not in combined

    # Compare with the stack made without the frame, pixel by pixel through the two WCSs.
    sci, var, dq, wcs = _planes(stack)
    ref_sci, ref_var, ref_dq, ref_wcs = _planes(without_bad_frame)
    yy, xx = np.mgrid[0:ref_sci.shape[0], 0:ref_sci.shape[1]]
    x, y = wcs.all_world2pix(*ref_wcs.all_pix2world(xx, yy, 0), 0)
    x, y = np.round(x).astype(int), np.round(y).astype(int)
    inside = (x >= 0) & (x < sci.shape[1]) & (y >= 0) & (y < sci.shape[0])
    here = np.where(inside, dq[y.clip(0, sci.shape[0] - 1), x.clip(0, sci.shape[1] - 1)], 16)
    # no good pixel outside the other frames' area: the saturated frame filled nothing in
    assert (dq == 0).sum() <= ((here == 0) & inside).sum() + 0.01 * (dq == 0).sum()
    both = inside & (here == 0) & (ref_dq == 0) & (ref_var > 0)
    empty = both & (np.abs(ref_sci) < 3 * np.sqrt(ref_var))
    assert empty.sum() > 0.3 * ref_sci.size
    here_sci = sci[y.clip(0, sci.shape[0] - 1), x.clip(0, sci.shape[1] - 1)]
    z = (here_sci - ref_sci)[empty] / np.sqrt(ref_var[empty])
    # the same data combined: differences far below the noise of either stack
    assert abs(np.median(z)) < 0.3 and np.std(z) < 0.5


@pytest.mark.parametrize("spoil", [_saturate, _blank], ids=["saturated", "all-NaN"])
def test_every_frame_saturated_is_an_error(spoil, science, tmp_path, monkeypatch):
    inputs = _copy(science, tmp_path / "in", spoil(-1))
    with pytest.raises(InputError) as err:
        _reduce(inputs, tmp_path / "run", monkeypatch)
    message = str(err.value)
    assert "every pixel of every input" in message and all(p.name in message for p in inputs)
    assert not list((tmp_path / "run").glob("*_image.fits"))


def test_two_filters_in_a_recipe_that_stacks_without_aligning(science, tmp_path, monkeypatch):
    """stackFrames refuses mixed filters itself (a user recipe need not call adjustWCSToReference)."""
    recipe = tmp_path / "my_recipes.py"
    recipe.write_text("def resample_and_stack(p):\n"
                      "    p.prepare()\n    p.addDQ()\n    p.ADUToElectrons()\n    p.addVAR(read_noise=True)\n"
                      "    p.resampleToCommonFrame()\n    p.stackFrames()\n")
    inputs = _copy(science, tmp_path / "in", _set_filter)
    from draconis.reduce import Reduce

    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    r = Reduce([str(f) for f in inputs], recipename=f"{recipe}:resample_and_stack", scheduler="synchronous")
    with pytest.raises(InputError) as err:
        r.runr()
    assert inputs[1].name in str(err.value) and OTHER_FILTER in str(err.value)
    assert _fits_written(tmp_path / "run") == []


# ---------------------------------------------------------------- stackFrames on its own
def _grid_frames(n: int, *, aligned: bool, seed: int = 5):
    """``n`` small frames on one grid, each with a PHU stamp ALIGN when ``aligned`` (as resampled frames)."""
    import dask.array as da

    from draconis.frame import Frame, make_extension

    rng = np.random.default_rng(seed)
    hdr = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 16.5, "CRPIX2": 16.5,
                       "CRVAL1": 10.0, "CRVAL2": -20.0, "CD1_1": -5e-5, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 5e-5})
    frames = []
    for k in range(n):
        phu = fits.Header({"INSTRUME": "F2", "OBSTYPE": "OBJECT", "ORIGNAME": f"S20200101S{k + 1:04d}.fits"})
        if aligned:
            phu["ALIGN"] = "2020-01-01T00:00:00"
        sci = rng.normal(100.0, 10.0, (32, 32)).astype(np.float32)
        ext = make_extension(hdr, *(da.from_array(a, chunks=(16, -1)) for a in
                                    (sci, np.full((32, 32), 100.0, np.float32), np.zeros((32, 32), np.uint16))))
        frames.append(Frame(phu=phu, extensions=(ext,), filename=f"S20200101S{k + 1:04d}_align.fits"))
    return frames


def _spoil(frame, *, sci: str | None = None, dq: int | None = None):
    """``frame`` with every SCI value NaN (``sci="nan"``) and/or every DQ value OR-ed with ``dq``."""
    ext = frame[0]
    planes = {}
    if sci == "nan":
        planes["SCI"] = ext.plane("SCI") * np.float32(np.nan)
    if dq is not None:
        planes["DQ"] = ext.plane("DQ") | np.uint16(dq)
    return frame.with_extensions([ext.with_planes(**planes)])


@pytest.mark.parametrize("spoil, apply_dq, left_out", [
    ({"sci": "nan"}, True, True),
    ({"dq": 1}, True, True),        # bad_pixel everywhere (a user BPM flagging every pixel)
    ({"dq": 2}, True, False),       # non_linear only: linearity-corrected data, kept
    ({"dq": 1}, False, False),      # DQ ignored: the frame's values are used
])
def test_stack_frames_leaves_out_an_unusable_resampled_frame(run_primitive, spoil, apply_dq, left_out,
                                                              warnings_seen):
    from draconis.testing import raise_if_dask_computes

    frames = _grid_frames(3, aligned=True)
    frames[1] = _spoil(frames[1], **spoil)
    # for every frame at once: one compute writes the stack's tile checkpoint, one answers "usable?"
    with raise_if_dask_computes(max_computes=2):
        (stack,) = run_primitive("stackFrames", frames, apply_dq=apply_dq, reject_method="none")
    named = [m for m in _messages(warnings_seen) if frames[1].filename in m and "left out" in m]
    assert bool(named) == left_out
    assert stack.phu["NCOMBINE"] == (2 if left_out else 3)
    if left_out:
        expected = (np.asarray(frames[0][0].plane("SCI")) + np.asarray(frames[2][0].plane("SCI"))) / 2
        np.testing.assert_allclose(np.asarray(stack[0].plane("SCI")), expected, rtol=1e-6)


def test_stack_frames_not_on_a_common_grid_stays_lazy(run_primitive):
    from draconis.testing import raise_if_dask_computes

    frames = _grid_frames(3, aligned=False)
    frames[1] = _spoil(frames[1], dq=1)
    with raise_if_dask_computes():
        (stack,) = run_primitive("stackFrames", frames, reject_method="none")
    assert stack.phu["NCOMBINE"] == 3


def test_stack_frames_every_input_unusable_is_an_error(run_primitive):
    frames = [_spoil(f, sci="nan") for f in _grid_frames(2, aligned=True)]
    with pytest.raises(InputError, match="every pixel of every input.*S20200101S0002_align.fits"):
        run_primitive("stackFrames", frames)
