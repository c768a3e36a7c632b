"""Helpers for tests of the calibration manager (and of code that uses it).

``make_calibration`` / ``make_frame`` write small FITS files whose headers
carry the keywords each instrument's descriptors read, so association rules
can be exercised without simulating pixels.  ``postgres_server`` starts (once
per process) a throw-away PostgreSQL with ``.ci/postgres.sh`` when
``DRACONIS_TEST_POSTGRES_URL`` is not set, and ``scratch_postgres_database``
makes an isolated database on it.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["BASE_CARDS", "PROCESSED_KEYWORD", "make_calibration", "make_frame", "postgres_server",
           "scratch_postgres_database", "scratch_database", "PostgresUnavailable"]

#: PHU keywords of a typical imaging frame of each instrument
BASE_CARDS: dict[str, dict[str, Any]] = {
    "F2": dict(INSTRUME="F2", OBSERVAT="Gemini-South", GRISM="Open", MOSPOS="Open", DECKER="Open",
               LYOT="f/16_G5830", FILTER1="K-red_G0812", FILTER2="Open", LNRS=8, EXPTIME=20.0, COADDS=1),
    "NIRI": dict(INSTRUME="NIRI", OBSERVAT="Gemini-North", FILTER1="J_G0202", FILTER2="pupil38_G5207",
                 FILTER3="open_G0218", CAMERA="f6", FPMASK="f6-cam_G5208", LNRS=1, NDAVGS=16,
                 A_VDDUC=-2.4, A_VDET=-1.8, EXPTIME=20.0, COADDS=1),
    "GNIRS": dict(INSTRUME="GNIRS", OBSERVAT="Gemini-North", ACQMIR="In", SLIT="Acq_G5530", DECKER="Acq_G5531",
                  GRATING="32/mm_G5506", PRISM="MIR_G5511", CAMERA="ShortBlue_G5540", FILTER1="Open",
                  FILTER2="J_G0517", LNRS=16, NDAVGS=16, DETBIAS=0.3, ARRAYID="SN7638228.1.2",
                  EXPTIME=60.0, COADDS=1),
    "GSAOI": dict(INSTRUME="GSAOI", OBSERVAT="Gemini-South", FILTER1="Kshort_G1104", FILTER2="Open",
                  READMODE="FOWLER", LNRS=8, EXPTIME=30.0, COADDS=1),
}
_N_EXT = {"F2": 1, "NIRI": 1, "GNIRS": 1, "GSAOI": 4}
_GSAOI_ARRAYS = ["H2RG-032-074", "H2RG-032-064", "H2RG-032-071", "H2RG-032-061"]

#: PHU keyword that makes a file a processed calibration of each type, and its OBSTYPE
PROCESSED_KEYWORD: dict[str, tuple[str, str]] = {
    "processed_dark": ("PROCDARK", "DARK"),
    "processed_flat": ("PROCFLAT", "FLAT"),
    "processed_bpm": ("BPMASK", "BPM"),
    "processed_standard": ("PROCSTND", "OBJECT"),
}


def _time_cards(when: dt.datetime | str) -> dict[str, str]:
    when = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
    return {"DATE-OBS": when.strftime("%Y-%m-%d"), "TIME-OBS": when.strftime("%H:%M:%S.%f")[:-3]}


def make_frame(path: str | os.PathLike, instrument: str, *, when: dt.datetime | str = "2020-01-07T03:00:00",
               shape: tuple[int, int] = (16, 16), ext_cards: dict[str, Any] | None = None, **cards: Any) -> str:
    """Write a small FITS frame of ``instrument`` (an OBJECT science frame unless ``cards`` say otherwise).

    Parameters
    ----------
    path : str or path
        File to write.
    instrument : str
        'F2', 'NIRI', 'GNIRS' or 'GSAOI'.
    when : datetime or ISO string
        Observation start (DATE-OBS, TIME-OBS).
    shape : tuple
        Pixel array shape of each extension.
    ext_cards : dict, optional
        Keywords for every SCI extension (a list value gives one per extension).
    **cards
        PHU keywords added or overriding :data:`BASE_CARDS` (None deletes one).
    """
    phu = fits.PrimaryHDU()
    values = {**BASE_CARDS[instrument], "OBSTYPE": "OBJECT", "OBSCLASS": "science",
              "OBSID": "GN-2020A-Q-1-1", **_time_cards(when), **cards}
    for key, value in values.items():
        if value is not None:
            phu.header[key] = value
    hdus: list[Any] = [phu]
    n_ext = _N_EXT[instrument]
    per_ext = dict(ext_cards or {})
    if instrument == "GSAOI":
        per_ext.setdefault("ARRAYID", _GSAOI_ARRAYS)
    for i in range(n_ext):
        hdu = fits.ImageHDU(np.zeros(shape, dtype=np.float32))
        hdu.header["EXTNAME"] = "SCI"
        hdu.header["EXTVER"] = i + 1
        for key, value in per_ext.items():
            hdu.header[key] = value[i] if isinstance(value, list) else value
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(os.fspath(path), overwrite=True)
    return os.fspath(path)


def make_calibration(path: str | os.PathLike, instrument: str, caltype: str, **kwargs: Any) -> str:
    """Write a small processed calibration (``processed_dark``, ``_flat``, ``_bpm``, ``_standard``).

    Keyword arguments are those of :func:`make_frame`; the processed marker
    keyword (PROCDARK, PROCFLAT, BPMASK, PROCSTND) and OBSTYPE are set from ``caltype``.
    """
    keyword, obstype = PROCESSED_KEYWORD[caltype]
    cards = {"OBSTYPE": obstype, "OBSCLASS": "dayCal", keyword: "2026-01-01T00:00:00"}
    if caltype == "processed_flat":
        cards["GCALLAMP"] = "IRhigh"
        cards["GCALSHUT"] = "OPEN"
    if caltype == "processed_standard":
        cards["OBSCLASS"] = "partnerCal"
    cards.update(kwargs.pop("cards", {}))
    return make_frame(path, instrument, **{**cards, **kwargs})


# -- PostgreSQL ------------------------------------------------------------------
class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started (the message says why)."""


_server: dict[str, Any] = {}


def postgres_server(script: str | os.PathLike | None) -> str:
    """URL of a PostgreSQL server for tests.

    ``$DRACONIS_TEST_POSTGRES_URL`` when set; otherwise ``script``
    (``.ci/postgres.sh``) is run once per process, without installing
    packages, and the server it starts is stopped when the process exits.

    Raises
    ------
    PostgresUnavailable
        With the reason (e.g. no PostgreSQL binaries on this machine).
    """
    url = os.environ.get("DRACONIS_TEST_POSTGRES_URL")
    if url:
        return url
    if "url" in _server:
        return _server["url"]
    if "error" in _server:
        raise PostgresUnavailable(_server["error"])
    if script is None or not os.path.isfile(script):
        _server["error"] = f"DRACONIS_TEST_POSTGRES_URL is unset and the start script {script} is missing"
        raise PostgresUnavailable(_server["error"])
    command = (f"export DRACONIS_PG_NO_INSTALL=1 DRACONIS_PG_NO_TRAP=1; source {shlex.quote(os.fspath(script))} "
               f"&& echo \"URL=$DRACONIS_TEST_POSTGRES_URL\" && echo \"STOP=$DRACONIS_TEST_POSTGRES_STOP\"")
    try:
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as err:
        _server["error"] = f"running {script} failed: {err}"
        raise PostgresUnavailable(_server["error"]) from err
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if line.startswith(("URL=", "STOP=")))
    if proc.returncode != 0 or not found.get("URL"):
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        _server["error"] = f"{script} could not start PostgreSQL (exit {proc.returncode}): {tail}"
        raise PostgresUnavailable(_server["error"])
    _server["url"] = found["URL"]
    if found.get("STOP"):
        atexit.register(subprocess.run, ["bash", "-c", found["STOP"]], capture_output=True)
    return _server["url"]


@contextlib.contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server (dropped afterwards); yields its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    name = f"draconis_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from .manager import _OPEN

        for key in [k for k in _OPEN if name in k]:
            db = _OPEN.pop(key)
            if db._engine is not None:
                db._engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def scratch_database(kind: str, tmp_path: str | os.PathLike, script: str | os.PathLike | None) -> Iterator[str]:
    """Yield a fresh database location of ``kind`` ('sqlite' or 'postgres') for one test.

    Raises
    ------
    PostgresUnavailable
        For 'postgres' when no server can be found or started.
    """
    if kind == "sqlite":
        yield os.path.join(os.fspath(tmp_path), "cal_manager.db")
        return
    with scratch_postgres_database(postgres_server(script)) as url:
        yield url



def concurrency_worker(location: str, paths: list[str], shared: list[str]) -> dict[str, Any]:
    """Add ``paths`` one by one to the database at ``location``, looking each up right after.

    Each calibration is asked for as if it were the science frame (a dark
    matches itself), so the lookup must return that very file.  ``shared``
    files are added too, by every worker, to race on the same rows.  Returns
    counts and every error or wrong answer (for tests run in many processes).
    """
    from . import CalibConfig, database_spec, get_calibration, open_database

    db = open_database(location)
    config = CalibConfig((database_spec(location, ("get",)),), "concurrency test")
    result: dict[str, Any] = {"added": 0, "found": 0, "errors": [], "wrong": []}
    for index, path in enumerate(paths):
        try:
            db.add_cal(path)
            result["added"] += 1
            if shared and index % 5 == 0:
                db.add_cal(shared[(index // 5) % len(shared)])
            found = get_calibration(path, "processed_dark", config=config)
            if found == os.path.abspath(path):
                result["found"] += 1
            else:
                result["wrong"].append((path, found))
        except Exception as err:  # noqa: BLE001 - report everything to the parent process
            result["errors"].append(f"{path}: {type(err).__name__}: {err}")
    return result
