"""``make_dataset``: simulate one dataset file by file and write its truth.

Every file has its own random generator (``default_rng([seed, 1, index])``)
so the result does not depend on the order or the number of processes;
static truth (dark current, flat, bad pixels, sources) comes from
``default_rng([seed, 0])``.  Files are written to a temporary name and
renamed, so an interrupted run never leaves a truncated FITS file.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import ParameterError
from ..instruments.illumination import f2_field_mask
from . import truth as truth_io
from .datasets import DATASETS, DatasetSpec, FrameSpec, dataset_frames
from .detector import EFFECTS, ArrayTruth, make_array_truth, read_out
from .geometry import load_gsaoi_distortion, offset_pointing
from .headers import extension_header, primary_header
from .instruments import InstrumentModel, instrument_model
from .keyhole import keyhole_mask
from .scene import Catalogue, make_catalogue, render_sources

__all__ = ["DatasetInfo", "make_dataset", "NIRI_BPM_NAME"]

NIRI_BPM_NAME = "bpm_20010317_niri_niri_11_full_1amp.fits"
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass
class DatasetInfo:
    """What :func:`make_dataset` wrote.

    ``files`` maps a role ('science', 'sky', 'dark', 'dark_5s', 'flat',
    'flat_on', 'flat_off', 'standard', 'bpm') to sorted paths.
    """

    name: str
    outdir: str
    files: dict[str, list[str]] = field(default_factory=dict)
    truth_dir: str = ""


@dataclass
class _State:
    spec: DatasetSpec
    model: InstrumentModel
    frames: list[FrameSpec]
    truths: list[ArrayTruth]
    catalogue: Catalogue
    std_catalogue: Catalogue | None
    effects: dict[str, bool]
    seed: int
    outdir: Path
    bias: float


_STATE: _State | None = None  # set before forking workers; read by _render_one


def _field_half_size(model: InstrumentModel) -> float:
    """Largest |offset| (arcsec) of any array corner from the pointing, at PA 0."""
    half = 0.0
    for arr in model.arrays:
        rows, cols = arr.shape
        x = np.array([1, cols, 1, cols], float)
        y = np.array([1, 1, rows, rows], float)
        xi, eta = arr.geometry.pix_to_offsets(x, y, 0.0)
        half = max(half, float(np.max(np.abs(xi))), float(np.max(np.abs(eta))))
    return half


def _catalogues(spec: DatasetSpec, model: InstrumentModel, frames: list[FrameSpec], rng) -> tuple:
    arr = model.arrays[0]
    half = _field_half_size(model)
    dither = max((max(abs(f.p), abs(f.q)) for f in frames if f.role == "science"), default=0.0)
    sci_t = max((f.exptime for f in frames if f.role == "science"), default=1.0)
    sigma_pix = spec.fwhm_arcsec * _FWHM_TO_SIGMA / model.pixel_scale
    # A star whose peak alone reaches the full well in one science exposure.
    saturating = arr.saturation_adu * arr.gain * 2 * np.pi * sigma_pix ** 2 / sci_t
    faint = 30.0 * np.sqrt(spec.sky_e_per_s * sci_t + arr.read_noise ** 2) * sigma_pix / sci_t
    flux_range = (faint, faint * 100.0)
    regions = [(0.0, 0.0, half + dither)]
    if spec.sky_offset:
        regions.append((spec.sky_offset[0], spec.sky_offset[1], half + dither))
    extra = []
    density = 10.0
    n_gal, n_sat = 2, 2
    if spec.instrument == "GNIRS":
        from .keyhole import CIRCLE_RADIUS
        radius = CIRCLE_RADIUS * arr.shape[1] * model.pixel_scale
        regions = [(0.0, 0.0, 0.6 * radius)]
        extra.append((0.0, 0.0, 20.0 * faint, "target", 0.0))
        density, n_gal, n_sat = 0.0, 0, 1
    elif spec.instrument == "NIRI":
        extra.append((0.0, 0.0, 2000.0 * faint, "galaxy", 1.2 * half))
    elif spec.instrument == "GSAOI":
        density = 2000.0  # resolved stars of the galaxy's outskirts
    cat = make_catalogue(rng, spec.target, regions, density=density, flux_range=flux_range, n_galaxies=n_gal,
                         n_saturated=n_sat, saturating_flux=saturating, extra=extra,
                         min_stars=3 if spec.instrument == "GNIRS" else int(np.ceil(8 * ((half + dither) / half) ** 2)))
    std = None
    if spec.standard:
        std = make_catalogue(rng, spec.standard, [(0.0, 0.0, half)], density=0.0, flux_range=flux_range,
                             n_galaxies=0, n_saturated=0, min_stars=2,
                             extra=[(0.0, 0.0, 30.0 * faint, "standard", 0.0)])
    return cat, std


def _illumination(inst: str, shape: tuple[int, int]) -> np.ndarray | None:
    if inst == "GNIRS":
        return keyhole_mask(shape)
    if inst == "F2":
        return f2_field_mask(shape)
    return None


def _frame_conditions(spec: DatasetSpec, frames: list[FrameSpec], seed: int, effects: dict) -> list[dict]:
    """Seeing, sky level and pointing error of every frame (drawn up front, per file)."""
    out = []
    on_sky = [f for f in frames if f.role in ("science", "sky", "standard")]
    t0 = min((f.ut for f in on_sky), default=None)
    for index, frame in enumerate(frames):
        rng = np.random.default_rng([seed, 2, index])
        cond = {"fwhm": 0.0, "sky": 0.0, "err": (0.0, 0.0)}
        if frame.role in ("science", "sky", "standard"):
            cond["fwhm"] = float(spec.fwhm_arcsec * np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))
            minutes = (frame.ut - t0).total_seconds() / 60.0 if t0 is not None else 0.0
            drift = (1.0 + 0.004 * minutes + 0.02 * np.sin(minutes / 7.0)) if effects["sky_drift"] else 1.0
            cond["sky"] = float(spec.sky_e_per_s * drift) if effects["sky"] else 0.0
            if effects["pointing_error"]:
                r, a = rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)
                cond["err"] = (float(r * np.cos(a)), float(r * np.sin(a)))
        out.append(cond)
    return out


def _render_one(args: tuple[int, dict]) -> dict:
    index, cond = args
    st = _STATE
    assert st is not None
    frame = st.frames[index]
    spec, model, eff = st.spec, st.model, st.effects
    rng = np.random.default_rng([st.seed, 1, index])
    pa = frame.pa
    is_sky_frame = frame.role in ("science", "sky", "standard")
    centre = spec.standard if frame.role == "standard" and spec.standard is not None else spec.target
    cat = st.std_catalogue if frame.role == "standard" and st.std_catalogue is not None else st.catalogue
    nominal = offset_pointing(*centre, frame.p, frame.q, pa)
    actual = offset_pointing(*centre, frame.p, frame.q, pa, extra=cond["err"])
    phu = primary_header(spec, model, frame, index, centre, 1.1 if is_sky_frame else 1.02)
    hdus: list = [fits.PrimaryHDU(header=phu)]
    n_cr = 0
    for arr, truth in zip(model.arrays, st.truths):
        t = frame.exptime
        if eff["nonlinearity"] and arr.delinearize is not None:
            t = t + arr.time_delta  # the pipeline scales by t / (t + time_delta) afterwards
        expected = np.zeros(arr.shape)
        if is_sky_frame:
            expected += cond["sky"] * t
            if eff["sources"]:
                render_sources(expected, cat, lambda xi, eta, a=arr: a.geometry.offsets_to_pix(xi, eta, pa),
                               actual, cond["fwhm"], model.pixel_scale, t)
            expected *= truth.response
        elif frame.role.startswith("flat"):
            expected += frame.lamp_e_per_s * t * truth.response
        expected += truth.dark_current * t
        bias = st.bias if eff["bias"] else 0.0
        adu, n = read_out(rng, arr, expected, bias, eff, cosmic_exptime=frame.exptime if is_sky_frame else 0.0)
        n_cr += n
        roi = frame.roi
        if roi is not None:
            x0, y0, nx, ny = roi
            adu = adu[y0:y0 + ny, x0:x0 + nx]
        if spec.instrument == "F2":
            adu = adu[np.newaxis]
        hdus.append(fits.ImageHDU(adu, header=extension_header(spec.instrument, arr, nominal, pa, roi)))
    path = st.outdir / f"{frame.stem}.fits"
    _atomic_write(fits.HDUList(hdus), path)
    return {"file": path.name, "role": frame.role, "group": frame.group, "ut": frame.ut.isoformat(),
            "exptime": frame.exptime, "object": frame.object, "p": frame.p, "q": frame.q, "pa": frame.pa,
            "sky_e_per_s": cond["sky"], "sky_e": cond["sky"] * frame.exptime, "fwhm_arcsec": cond["fwhm"],
            "pointing_error_east": cond["err"][0], "pointing_error_north": cond["err"][1],
            "ra_pointing": actual[0], "dec_pointing": actual[1], "ra_nominal": nominal[0],
            "dec_nominal": nominal[1], "cosmic_rays": n_cr}


def _atomic_write(hdul: fits.HDUList, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    hdul.writeto(tmp, overwrite=True, output_verify="silentfix")
    os.replace(tmp, path)


def _write_niri_bpm(outdir: Path, truths: list[ArrayTruth]) -> Path:
    phu = fits.Header()
    phu["INSTRUME"] = "NIRI"
    phu["OBSTYPE"] = "BPM"
    phu["OBJECT"] = "BPM"
    phu["OBSERVAT"] = "Gemini-North"
    phu["TELESCOP"] = "Gemini-North"
    phu["BPMASK"] = (True, "bad pixel mask (simulated hot and dead pixels)")
    phu["DATE-OBS"] = "2001-03-17"
    ext = fits.Header()
    ext["EXTNAME"] = "SCI"
    ext["EXTVER"] = 1
    path = outdir / NIRI_BPM_NAME
    _atomic_write(fits.HDUList([fits.PrimaryHDU(header=phu),
                                fits.ImageHDU(truths[0].bad.astype(np.int16), header=ext)]), path)
    return path


def make_dataset(name: str, outdir: str | os.PathLike, *, size: int | None = None, nframes: int | None = None,
                 seed: int = 0, effects: dict[str, bool] | None = None, progress: bool = False,
                 position_angles: Mapping[str, float] | None = None, dither: float | None = None,
                 roles: Iterable[str] | None = None) -> DatasetInfo:
    """Simulate the raw files of dataset ``name`` in ``outdir``, with the truth in ``outdir/truth``.

    Parameters
    ----------
    name : str
        'f2-deep', 'niri-extended', 'gnirs-keyhole' or 'gsaoi-galaxy' (see :data:`DATASETS`).
    outdir : path
        Output directory (created).
    size : int, optional
        Array size in pixels (default: the real size); pixel scales are kept,
        dithers scale with the field.
    nframes : int, optional
        Number of science frames (default: the seed's count); file numbers continue.
    seed : int
        Seed of every random draw: same arguments, same files.
    effects : dict, optional
        Switch effects on/off, e.g. ``{"nonlinearity": False}``; keys in :data:`EFFECTS`.
    progress : bool
        Print one line per file written.
    position_angles : mapping, optional
        Position angle (degrees) of some frames, by file stem (default 0 for every frame); the
        instrument rotates on the sky about the pointing, the offsets keep their instrument frame.
    dither : float, optional
        Dither step (arcsec) of gsaoi-galaxy (default 5" x size/2048).
    roles : iterable of str, optional
        Write only the files of these roles ('science', 'sky', 'dark', 'flat_on', 'flat_off',
        'standard'); the others are still drawn (so the written files do not change), not written.

    Returns
    -------
    DatasetInfo

    Raises
    ------
    ParameterError
        Unknown dataset or effect, or a size too small.
    """
    global _STATE
    if name not in DATASETS:
        raise ParameterError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    unknown = set(effects or {}) - set(EFFECTS)
    if unknown:
        raise ParameterError(f"unknown simulator effect(s) {sorted(unknown)}: choose from {', '.join(EFFECTS)}")
    if size is not None and size < 16:
        raise ParameterError(f"simulator size {size} too small: use at least 16 pixels")
    if nframes is not None and nframes < 1:
        raise ParameterError(f"simulator nframes {nframes}: must be at least 1")
    eff = {**EFFECTS, **(effects or {})}
    spec = DATASETS[name]
    out = Path(outdir)
    truth_dir = out / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    model = instrument_model(spec.instrument, size)
    try:
        frames = dataset_frames(name, size, nframes, seed, dither=dither)
    except ValueError as err:
        raise ParameterError(str(err)) from None
    unknown_stems = set(position_angles or {}) - {f.stem for f in frames}
    if unknown_stems:
        raise ParameterError(f"position_angles names no file of {name}: {sorted(unknown_stems)}")
    for frame in frames:
        frame.pa = float((position_angles or {}).get(frame.stem, 0.0))
    rng = np.random.default_rng([seed, 0])
    truths = [make_array_truth(rng, arr.shape, spec.dark_e_per_s, eff, _illumination(spec.instrument, arr.shape))
              for arr in model.arrays]
    cat, std = _catalogues(spec, model, frames, rng)
    conditions = _frame_conditions(spec, frames, seed, eff)
    _STATE = _State(spec, model, frames, truths, cat, std, eff, seed, out, spec.bias_e)
    wanted = None if roles is None else set(roles)
    jobs = [(k, c) for k, c in enumerate(conditions) if wanted is None or frames[k].role in wanted]
    npix = sum(a.shape[0] * a.shape[1] for a in model.arrays)
    records: list[dict] = []
    try:
        if len(jobs) > 4 and npix >= 512 * 512 and (os.cpu_count() or 1) > 1:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(2, mp_context=ctx) as pool:
                for rec in pool.map(_render_one, jobs, chunksize=2):
                    records.append(rec)
                    if progress:
                        print(f"  wrote {rec['file']} ({rec['role']})", flush=True)
        else:
            for job in jobs:
                rec = _render_one(job)
                records.append(rec)
                if progress:
                    print(f"  wrote {rec['file']} ({rec['role']})", flush=True)
    finally:
        _STATE = None
    info = DatasetInfo(name, str(out), truth_dir=str(truth_dir))
    for rec in records:
        path = str(out / rec["file"])
        for key in {rec["role"], rec["group"]} | ({"dark"} if rec["role"] == "dark" else set()) \
                | ({"flat"} if rec["role"].startswith("flat") else set()):
            info.files.setdefault(key, []).append(path)
    if spec.instrument == "NIRI":
        info.files["bpm"] = [str(_write_niri_bpm(out, truths))]
    info.files = {k: sorted(v) for k, v in info.files.items()}
    truth_io.write_truth(truth_dir, spec, model, truths, cat, std, records, eff, spec.bias_e if eff["bias"] else 0.0,
                         size=size, seed=seed)
    if spec.instrument == "GSAOI":
        (truth_dir / "gsaoi_static_distortion.json").write_text(json.dumps(load_gsaoi_distortion(), indent=1))
    return info
