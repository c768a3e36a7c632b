"""Two tiny science reductions for the cluster, lost-worker and resume tests, and how to compare their outputs.

* F2 deep field, default recipe (calibrate, flush, two-pass sky, detect,
  align, resample, stack): 6 frames of 64 px.
* NIRI extended source with an offset sky, as the seed reduces it
  (``addDQ:user_bpm``, ``skyCorrect:scale_sky=False``): 3 object + 3 sky
  frames of 64 px.

Each dataset is simulated and calibrated (dark, flat, BPM; synchronous
scheduler) once per test session under pytest's base temporary directory,
and reused by every test module that asks for it.  Every science run adds
``detectSources:write_outputs=True`` so the per-frame source catalogues are
among the outputs compared.

:func:`products` reads every FITS output of a run directory; two runs agree
(:func:`assert_same_products`) when every HDU has the same data, bit for bit
(images and table columns), and the same header cards apart from UTC time
stamps.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

import draconis

SIZE = 64
#: so the per-frame catalogues are outputs too
CATALOGUES = ("detectSources:write_outputs", "True")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@dataclasses.dataclass
class Dataset:
    """A simulated, calibrated dataset ready for its science reduction."""

    name: str
    work: Path
    science: list[str]
    ucals: dict[str, str]
    uparms: list[tuple[str, str]]

    def cli_args(self) -> list[str]:
        """``draconis reduce`` arguments (inputs, ``-p`` and ``--user_cal``) of the science run."""
        args = list(self.science)
        for key, value in self.uparms:
            args += ["-p", f"{key}={value}"]
        for caltype, path in self.ucals.items():
            args += ["--user_cal", f"{caltype}:{path}"]
        return [*args, "--no-report"]  # the HTML report is another helper's subject


@contextlib.contextmanager
def isolated(directory: Path) -> Iterator[Path]:
    """Work in ``directory`` with HOME there (its own calibration database); restore both after."""
    directory.mkdir(parents=True, exist_ok=True)
    old_cwd, old_home = os.getcwd(), os.environ.get("HOME")
    os.chdir(directory)
    os.environ["HOME"] = str(directory)
    try:
        yield directory
    finally:
        os.chdir(old_cwd)
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home


def dataset(name: str, base: Path) -> Dataset:
    """Dataset ``f2`` or ``niri`` under ``base`` (simulated and calibrated on first use)."""
    work = base / f"dataset-{name}"
    ready = work / "dataset.json"
    if not ready.exists():
        with isolated(work):
            info = {"f2": _make_f2, "niri": _make_niri}[name](work)
        ready.write_text(json.dumps(info))
    info = json.loads(ready.read_text())
    return Dataset(name, work, info["science"], info["ucals"], [tuple(u) for u in info["uparms"]])


def _calibration(files: Sequence[str], **kwargs: Any) -> str:
    from draconis.reduce import Reduce

    (out,) = Reduce(list(files), scheduler="synchronous", **kwargs).runr()
    return os.path.abspath(out)


def _exptime(path: str) -> float:
    return draconis.open(path).exposure_time()


def _make_f2(work: Path) -> dict:
    from draconis.simulate import make_dataset

    files = make_dataset("f2-deep", work / "raw", size=SIZE, nframes=6, seed=4).files
    science = [str(p) for p in files["science"]]
    t_flat = _exptime(files["flat"][0])
    dark = _calibration(files["dark_5s"])
    flat = _calibration([*files["flat"], *(d for d in files["dark"] if abs(_exptime(d) - t_flat) < 0.01)])
    return {"science": science, "ucals": {"processed_dark": dark, "processed_flat": flat},
            "uparms": [CATALOGUES]}


def _make_niri(work: Path) -> dict:
    from draconis.simulate import make_dataset

    files = make_dataset("niri-extended", work / "raw", size=SIZE, nframes=6, seed=6).files
    darks, flats = list(files["dark"]), list(files["flat"])
    short = min(_exptime(d) for d in darks)
    bpm = _calibration([*flats, *(d for d in darks if abs(_exptime(d) - short) < 0.01)],
                       recipename="makeProcessedBPM")
    flat = _calibration(flats, uparms=[("addDQ:user_bpm", bpm)])
    science = [str(p) for p in sorted([*files["science"], *files["sky"]])]
    dark = _calibration([d for d in darks if abs(_exptime(d) - _exptime(science[0])) < 0.01])
    return {"science": science, "ucals": {"processed_dark": dark, "processed_flat": flat},
            "uparms": [("addDQ:user_bpm", bpm), ("skyCorrect:scale_sky", "False"), CATALOGUES]}


def reduce_api(ds: Dataset, directory: Path, scheduler: str | None, **kwargs: Any):
    """The science run through ``draconis.Reduce`` in ``directory``; returns the Reduce object."""
    from draconis.reduce import Reduce

    with isolated(directory):
        reducer = Reduce(ds.science, uparms=list(ds.uparms), ucals=dict(ds.ucals), scheduler=scheduler, **kwargs)
        reducer.report = False
        reducer.runr()
    return reducer


def reduce_cli(ds: Dataset, directory: Path, scheduler: str | None, *extra: str) -> int:
    """The science run through ``draconis reduce`` (in this process) in ``directory``; returns the exit status."""
    from draconis.cli import main

    with isolated(directory):
        args = [*ds.cli_args(), "--logfile", str(directory / "reduce.log"), *extra]
        if scheduler:
            args += ["--scheduler", scheduler]
        return main(["reduce", *args])


# -- comparing outputs --------------------------------------------------------
def products(directory: Path) -> dict[str, list[tuple[str, Any, dict]]]:
    """Every FITS file directly in ``directory``: per HDU its name, data and header cards (time stamps out)."""
    out = {}
    for path in sorted(directory.glob("*.fits")):
        with fits.open(path) as hdul:
            out[path.name] = [(hdu.name, _data(hdu), _cards(hdu.header)) for hdu in hdul]
    return out


def _data(hdu) -> Any:
    if hdu.data is None:
        return None
    if isinstance(hdu, fits.BinTableHDU):
        return {name: np.array(hdu.data[name]) for name in hdu.columns.names}
    return np.array(hdu.data)


def _cards(header: fits.Header) -> dict[str, Any]:
    cards = {}
    for i, card in enumerate(header.cards):
        if card.keyword in ("CHECKSUM", "DATASUM"):
            continue
        if isinstance(card.value, str) and _STAMP.match(card.value):
            continue
        cards[f"{i}:{card.keyword}"] = card.value
    return cards


def assert_same_products(got: dict, expected: dict, what: str = "") -> None:
    """Same files, same HDUs, identical data and headers (time stamps aside)."""
    assert sorted(got) == sorted(expected), f"{what}: files differ: {sorted(got)} vs {sorted(expected)}"
    for name, hdus in expected.items():
        other = got[name]
        assert [h[0] for h in other] == [h[0] for h in hdus], f"{what}: {name}: HDUs differ"
        for (hdu, data, cards), (_, odata, ocards) in zip(hdus, other):
            where = f"{what}: {name}[{hdu}]"
            assert ocards == cards, f"{where}: header differs: {_card_diff(ocards, cards)}"
            if isinstance(data, dict):
                assert sorted(odata) == sorted(data), f"{where}: columns differ"
                for col, values in data.items():
                    assert np.array_equal(odata[col], values, equal_nan=values.dtype.kind == "f"), \
                        f"{where}: column {col} differs"
            elif data is not None:
                assert odata is not None and odata.shape == data.shape, f"{where}: shape differs"
                same = np.array_equal(odata, data, equal_nan=data.dtype.kind == "f")
                assert same, f"{where}: data differ (max |diff| {_max_diff(odata, data)})"


def _card_diff(a: dict, b: dict) -> str:
    keys = sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys[:5])


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.abs(a.astype(float) - b.astype(float))
    return float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")


def summary(prods: dict) -> str:
    """Files and HDU names, for messages."""
    return ", ".join(f"{n}[{'/'.join(h[0] for h in hdus)}]" for n, hdus in prods.items())


def reference(ds: Dataset, base: Path) -> dict:
    """The products of ``ds``'s science run with the synchronous scheduler (run once per session)."""
    directory = base / f"reference-{ds.name}"
    if not (directory / "done").exists():
        reduce_api(ds, directory, "synchronous")
        (directory / "done").write_text("")
    return products(directory)
