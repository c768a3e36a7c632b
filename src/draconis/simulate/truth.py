"""The truth written next to a simulated dataset (``outdir/truth``).

* ``sources.ecsv``: id, ra, dec, flux_e_per_s, kind, fwhm_arcsec (intrinsic), field
* ``frames.ecsv``: per raw file: role, ut, exptime, sky level, seeing, offsets,
  pointing error (east, north, arcsec) and the true pointing
* ``flat.fits``, ``dark_current.fits`` (e-/s; BIAS keyword in e-), ``bpm.fits``:
  one image extension per array
* ``effects.json``: the effect switches and the scalar truths (bias in e-, gains)

The FITS truth files carry INSTRUME and BPMASK so that draconis opens them as
processed calibration-like products (tagged BPM/CAL): a ``dataselect`` over
``outdir/**/*.fits`` never mistakes them for raw data.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

__all__ = ["write_truth"]


def _write_table(table: Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    table.write(tmp, format="ascii.ecsv", overwrite=True)
    os.replace(tmp, path)


def _write_maps(path: Path, instrument: str, kind: str, maps: list[np.ndarray], **cards) -> None:
    phu = fits.Header()
    phu["INSTRUME"] = instrument
    phu["OBSTYPE"] = "TRUTH"
    phu["OBJECT"] = f"truth {kind}"
    phu["BPMASK"] = (True, "marks a simulator truth file (not raw data)")
    phu["SIMTRUTH"] = (kind, "simulator truth content")
    phu["OBSCLASS"] = "truth"
    phu["FILTER1"] = "Open"  # descriptors work, and no filter selection matches a truth file
    phu["FILTER2"] = "Open"
    phu["EXPTIME"] = (0.0, "not an exposure")
    for key, value in cards.items():
        phu[key] = value
    hdus = [fits.PrimaryHDU(header=phu)]
    for i, data in enumerate(maps, start=1):
        ext = fits.Header()
        ext["EXTNAME"] = "SCI"
        ext["EXTVER"] = i
        hdus.append(fits.ImageHDU(data, header=ext))
    tmp = path.with_name(f".{path.name}.tmp")
    fits.HDUList(hdus).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def write_truth(truth_dir: Path, spec, model, truths, cat, std, records, effects, bias, *, size, seed) -> None:
    """Write every truth file of one dataset."""
    rows: list[tuple[Any, ...]] = []
    for field, c in (("target", cat), ("standard", std)):
        if c is None:
            continue
        for i in range(len(c)):
            rows.append((len(rows) + 1, float(c.ra[i]), float(c.dec[i]), float(c.flux[i]), str(c.kind[i]),
                         float(c.fwhm[i]), field))
    sources = Table(rows=rows, names=("id", "ra", "dec", "flux_e_per_s", "kind", "fwhm_arcsec", "field"))
    sources["ra"].unit = sources["dec"].unit = "deg"
    _write_table(sources, truth_dir / "sources.ecsv")
    _write_table(Table(rows=records), truth_dir / "frames.ecsv")
    inst = spec.instrument
    _write_maps(truth_dir / "flat.fits", inst, "flat", [t.response.astype(np.float32) for t in truths])
    _write_maps(truth_dir / "dark_current.fits", inst, "dark_current",
                [t.dark_current.astype(np.float32) for t in truths], BIAS=(bias, "bias level (e-)"))
    _write_maps(truth_dir / "bpm.fits", inst, "bpm", [t.bad.astype(np.int16) for t in truths])
    info = {
        "dataset": spec.name, "instrument": inst, "seed": seed, "size": size,
        "effects": effects, "bias": bias, "bias_unit": "e-",
        "gain": [a.gain for a in model.arrays], "read_noise": [a.read_noise for a in model.arrays],
        "saturation_adu": [a.saturation_adu for a in model.arrays],
        "time_delta": [a.time_delta if effects["nonlinearity"] and a.delinearize is not None else 0.0
                       for a in model.arrays],
        "pixel_scale": model.pixel_scale, "target": list(spec.target),
        "notes": ("Raw = ADU. Electrons collected = (sky + sources) x flat + dark_current x t + bias; "
                  "non-linearity is the inverse of draconis.kernels.nonlinearity applied to the total; "
                  "IRDC instruments expose for t + time_delta. GSAOI sources are placed through the static "
                  "distortion model; headers carry its best linear approximation."),
    }
    (truth_dir / "effects.json").write_text(json.dumps(info, indent=1, default=str))
