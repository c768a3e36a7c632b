"""The calibration database: operations and association rules, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import os
import warnings
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from draconis import caldb
from draconis.caldb import CalibConfig, database_spec
from draconis.caldb.ingest import frame_descriptors
from draconis.caldb.rules import build_query
from draconis.caldb.testing import PostgresUnavailable, make_calibration, make_frame, scratch_database
from draconis.errors import CalDBError
import draconis

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"
T0 = dt.datetime(2020, 1, 7, 3, 0, 0)


def days(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database location on each backend."""
    try:
        with scratch_database(request.param, tmp_path, SCRIPT) as url:
            yield url
    except PostgresUnavailable as err:
        warnings.warn(f"PostgreSQL calibration-database tests NOT RUN: {err}")
        pytest.skip(f"WARNING: no PostgreSQL server: {err}")


@pytest.fixture
def db(db_url):
    database = caldb.set_local_database(db_url)
    database.init(wipe=True) if database.exists() else database.init()
    return database


@pytest.fixture
def config(db):
    return CalibConfig((database_spec(db.spec.location, ("get", "store")),), "test")


@pytest.fixture
def work(tmp_path, monkeypatch):
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


def best(science, caltype, config):
    found = caldb.get_calibration(science, caltype, config=config)
    return os.path.basename(found) if found else None


# -- operations ------------------------------------------------------------------
def test_init_refuses_existing_database_unless_wiped(db, work):
    db.add_cal(make_calibration(work / "d_dark.fits", "F2", "processed_dark"))
    with pytest.raises(CalDBError, match="already exists"):
        db.init(exist_ok=False)
    assert len(db.list_files()) == 1
    db.init()  # the API (seed scripts start with caldb.init()) keeps an existing database
    caldb.init()
    assert len(db.list_files()) == 1
    db.init(wipe=True)
    assert db.list_files() == []


def test_add_list_remove_keeps_files(db, work):
    dark = make_calibration(work / "S1_dark.fits", "F2", "processed_dark")
    flat = make_calibration(work / "S2_flat.fits", "F2", "processed_flat")
    bpm = make_calibration(work / "bpm.fits", "F2", "processed_bpm")
    stored = [db.add_cal(p) for p in (dark, flat, bpm)]
    assert [s.caltype for s in stored] == ["processed_dark", "processed_flat", "processed_bpm"]
    listed = {(f.name, f.directory) for f in db.list_files()}
    assert listed == {("S1_dark.fits", str(work)), ("S2_flat.fits", str(work)), ("bpm.fits", str(work))}
    assert db.remove_cal("S1_dark.fits") == 1
    assert os.path.exists(dark), "remove must never delete the file"
    assert {f.name for f in db.list_files()} == {"S2_flat.fits", "bpm.fits"}
    with pytest.raises(CalDBError, match="S1_dark.fits: not in the calibration database"):
        db.remove_cal("S1_dark.fits")


def test_adding_twice_updates_instead_of_duplicating(db, work, config):
    path = make_calibration(work / "x_dark.fits", "F2", "processed_dark", EXPTIME=5.0)
    db.add_cal(path)
    make_calibration(path, "F2", "processed_dark", EXPTIME=7.0)  # same file, new contents
    db.add_cal(path)
    assert len(db.list_files()) == 1
    science = make_frame(work / "sci.fits", "F2", EXPTIME=7.0)
    assert best(science, "processed_dark", config) == "x_dark.fits"
    make_frame(science, "F2", EXPTIME=5.0)
    assert best(science, "processed_dark", config) is None


def test_module_level_functions_act_on_the_chosen_database(db, work):
    assert caldb.set_local_database(db.spec.location) is db
    caldb.add_cal(make_calibration(work / "m_flat.fits", "NIRI", "processed_flat"))
    assert [f.name for f in caldb.list_files()] == ["m_flat.fits"]
    assert caldb.remove_cal(str(work / "m_flat.fits")) == 1
    assert caldb.list_files() == []


@pytest.mark.parametrize("cards, problem", [
    ({"OBSTYPE": "OBJECT"}, "not a processed calibration"),
    ({"OBSTYPE": "DARK", "PROCDARK": None}, "not a processed calibration"),
])
def test_refuses_files_that_are_not_processed_calibrations(db, work, cards, problem):
    path = make_frame(work / "N2020_raw.fits", "NIRI", **cards)
    with pytest.raises(CalDBError, match=problem) as info:
        db.add_cal(path)
    assert str(path) in str(info.value)
    assert db.list_files() == []


def test_refuses_calibration_without_needed_descriptor(db, work):
    path = make_calibration(work / "noexp_dark.fits", "F2", "processed_dark", EXPTIME=None)
    with pytest.raises(CalDBError, match="exposure_time") as info:
        db.add_cal(path)
    assert "noexp_dark.fits" in str(info.value)
    assert db.list_files() == []


# -- association rules ----------------------------------------------------------------
def test_f2_dark_matches_exposure_and_read_mode_closest_in_time(db, work, config):
    make = lambda name, **kw: db.add_cal(make_calibration(work / name, "F2", "processed_dark", **kw))
    make("far_dark.fits", when=days(-60))
    make("near_dark.fits", when=days(+2))
    make("other_exp_dark.fits", when=days(0), EXPTIME=8.0)
    make("other_mode_dark.fits", when=days(0), LNRS=1)
    make("too_old_dark.fits", when=days(-95))
    science = make_frame(work / "S20200107S0100.fits", "F2", when=T0)
    assert best(science, "processed_dark", config) == "near_dark.fits"
    db.remove_cal("near_dark.fits")
    db.remove_cal("far_dark.fits")
    assert best(science, "processed_dark", config) is None  # only a 95-day-old match is left


def test_failed_qa_is_never_chosen(db, work, config):
    db.add_cal(make_calibration(work / "bad_dark.fits", "F2", "processed_dark", when=days(0), RAWGEMQA="BAD"))
    db.add_cal(make_calibration(work / "ok_dark.fits", "F2", "processed_dark", when=days(10)))
    science = make_frame(work / "sci.fits", "F2", when=T0)
    assert best(science, "processed_dark", config) == "ok_dark.fits"


def test_ties_go_to_the_newest_ingestion(db, work, config):
    for name in ("first_dark.fits", "second_dark.fits"):
        db.add_cal(make_calibration(work / name, "F2", "processed_dark", when=days(1)))
    science = make_frame(work / "sci.fits", "F2", when=T0)
    assert best(science, "processed_dark", config) == "second_dark.fits"


def test_f2_flat_matches_filter_and_lyot(db, work, config):
    db.add_cal(make_calibration(work / "J_flat.fits", "F2", "processed_flat", FILTER1="J_G0802"))
    db.add_cal(make_calibration(work / "f32_flat.fits", "F2", "processed_flat", LYOT="f/32_G5832"))
    db.add_cal(make_calibration(work / "Kred_flat.fits", "F2", "processed_flat", when=days(80)))
    science = make_frame(work / "sci.fits", "F2", when=T0)
    assert best(science, "processed_flat", config) == "Kred_flat.fits"


def test_niri_dark_exposure_tolerance_and_roi(db, work, config):
    full = {"LOWROW": 0, "HIROW": 1023, "LOWCOL": 0, "HICOL": 1023}
    roi = {"LOWROW": 256, "HIROW": 767, "LOWCOL": 256, "HICOL": 767}
    add = lambda name, **kw: db.add_cal(make_calibration(work / name, "NIRI", "processed_dark", **kw))
    add("fuzzy_dark.fits", EXPTIME=1.001, ext_cards=full, when=days(100))
    add("roi_dark.fits", EXPTIME=1.0, ext_cards=roi, when=days(0))
    add("coadds_dark.fits", EXPTIME=1.0, COADDS=2, ext_cards=full, when=days(0))
    add("deep_dark.fits", EXPTIME=1.0, A_VDDUC=-2.67, ext_cards=full, when=days(0))
    add("longer_dark.fits", EXPTIME=1.02, ext_cards=full, when=days(0))
    science = make_frame(work / "N20160102S0300.fits", "NIRI", EXPTIME=1.0, ext_cards=full, when=T0)
    assert best(science, "processed_dark", config) == "fuzzy_dark.fits"
    roi_science = make_frame(work / "roi.fits", "NIRI", EXPTIME=1.0, ext_cards=roi, when=T0)
    assert best(roi_science, "processed_dark", config) == "roi_dark.fits"


def test_niri_flat_matches_camera_and_window(db, work, config):
    db.add_cal(make_calibration(work / "f32_flat.fits", "NIRI", "processed_flat", CAMERA="f32"))
    db.add_cal(make_calibration(work / "old_flat.fits", "NIRI", "processed_flat", when=days(-200)))
    db.add_cal(make_calibration(work / "good_flat.fits", "NIRI", "processed_flat", when=days(-170)))
    science = make_frame(work / "sci.fits", "NIRI", when=T0)
    assert best(science, "processed_flat", config) == "good_flat.fits"


def test_gnirs_keyhole_images_find_darks(db, work, config):
    """draconis associates GNIRS keyhole darks, which DRAGONS 3 could not."""
    db.add_cal(make_calibration(work / "N20120102S0538_dark.fits", "GNIRS", "processed_dark", when=days(-5)))
    db.add_cal(make_calibration(work / "deep_dark.fits", "GNIRS", "processed_dark", DETBIAS=0.6))
    db.add_cal(make_calibration(work / "other_array_dark.fits", "GNIRS", "processed_dark", ARRAYID="SN7638228.1"))
    science = make_frame(work / "N20120117S0014.fits", "GNIRS", when=T0)
    assert "IMAGE" in draconis.open(science).tags
    assert best(science, "processed_dark", config) == "N20120102S0538_dark.fits"


def test_gnirs_flat_prefers_the_same_observation(db, work, config):
    db.add_cal(make_calibration(work / "near_flat.fits", "GNIRS", "processed_flat", when=days(1),
                                OBSID="GN-2012A-Q-9-9"))
    db.add_cal(make_calibration(work / "same_obs_flat.fits", "GNIRS", "processed_flat", when=days(30),
                                OBSID="GN-2020A-Q-1-1"))
    db.add_cal(make_calibration(work / "other_filter_flat.fits", "GNIRS", "processed_flat", FILTER2="H_G0516",
                                OBSID="GN-2020A-Q-1-1"))
    science = make_frame(work / "sci.fits", "GNIRS", when=T0, OBSID="GN-2020A-Q-1-1")
    assert best(science, "processed_flat", config) == "same_obs_flat.fits"


def test_gsaoi_flat_ignores_roi_and_has_no_dark_rule(db, work, config):
    db.add_cal(make_calibration(work / "S20170505S0030_flat.fits", "GSAOI", "processed_flat", when=days(-20),
                                shape=(32, 32)))
    db.add_cal(make_calibration(work / "stale_flat.fits", "GSAOI", "processed_flat", when=days(-31)))
    db.add_cal(make_calibration(work / "dark.fits", "GSAOI", "processed_dark"))
    standard = make_frame(work / "S20170504S0114.fits", "GSAOI", when=T0, shape=(8, 8),
                          ext_cards={"DATASEC": "[1:8,1:8]", "DETSEC": "[1001:1008,1001:1008]"})
    assert best(standard, "processed_flat", config) == "S20170505S0030_flat.fits"
    assert best(standard, "processed_dark", config) is None


@pytest.mark.parametrize("instrument", ["F2", "NIRI", "GNIRS", "GSAOI"])
def test_bpm_is_the_most_recent_not_later_than_the_frame(db, work, config, instrument):
    for name, offset in (("old_bpm.fits", -400), ("recent_bpm.fits", -3), ("future_bpm.fits", +1)):
        db.add_cal(make_calibration(work / name, instrument, "processed_bpm", when=days(offset)))
    science = make_frame(work / "sci.fits", instrument, when=T0)
    assert best(science, "processed_bpm", config) == "recent_bpm.fits"


def test_gnirs_bpm_must_match_the_array(db, work, config):
    db.add_cal(make_calibration(work / "other_bpm.fits", "GNIRS", "processed_bpm", ARRAYID="SN7638228.1",
                                when=days(-1)))
    science = make_frame(work / "sci.fits", "GNIRS", when=T0)
    assert best(science, "processed_bpm", config) is None


def test_instruments_never_mix(db, work, config):
    db.add_cal(make_calibration(work / "niri_bpm.fits", "NIRI", "processed_bpm", when=days(-1)))
    science = make_frame(work / "sci.fits", "F2", when=T0)
    assert best(science, "processed_bpm", config) is None


def test_rules_are_sql_queries():
    sci = {"instrument": "NIRI", "ut_epoch": 1.6e9, "data_section": "[1:1024,1:1024]", "read_mode": "x",
           "well_depth_setting": "Shallow", "coadds": 1, "exposure_time": 1.0}
    stmt = build_query("processed_dark", sci)
    text = str(stmt.compile(dialect=sqlite.dialect()))
    assert "WHERE" in text and "ORDER BY" in text and "LIMIT" in text
    assert "abs(calibration.exposure_time" in text
    assert build_query("processed_dark", {**sci, "instrument": "GSAOI"}) is None


def test_missing_files_are_skipped(db, work, config):
    gone = make_calibration(work / "gone_dark.fits", "F2", "processed_dark", when=days(0))
    db.add_cal(gone)
    db.add_cal(make_calibration(work / "kept_dark.fits", "F2", "processed_dark", when=days(5)))
    os.unlink(gone)
    science = make_frame(work / "sci.fits", "F2", when=T0)
    assert best(science, "processed_dark", config) == "kept_dark.fits"


# -- cascade and automatic storage ------------------------------------------------------
def test_cascade_searches_get_databases_in_order(db, work, tmp_path):
    second = caldb.set_local_database(tmp_path / "second.db")
    second.init()
    first_only = make_calibration(work / "first_flat.fits", "F2", "processed_flat", when=days(20))
    second_only = make_calibration(work / "second_flat.fits", "F2", "processed_flat", when=days(0))
    second_dark = make_calibration(work / "second_dark.fits", "F2", "processed_dark", when=days(0))
    db.add_cal(first_only)
    second.add_cal(second_only)
    second.add_cal(second_dark)
    cfg = CalibConfig((database_spec(db.spec.location), database_spec(str(tmp_path / "second.db"))), "test")
    science = make_frame(work / "sci.fits", "F2", when=T0)
    assert best(science, "processed_flat", cfg) == "first_flat.fits"  # first DB answers, though farther in time
    assert best(science, "processed_dark", cfg) == "second_dark.fits"
    store_only = CalibConfig((database_spec(db.spec.location, ("store",)),), "test")
    assert best(science, "processed_flat", store_only) is None


def test_store_copies_to_calibrations_and_adds_to_store_databases(db, work, tmp_path):
    getonly = caldb.set_local_database(tmp_path / "getonly.db")
    getonly.init()
    cfg = CalibConfig((database_spec(str(tmp_path / "getonly.db"), ("get",)),
                       database_spec(db.spec.location, ("get", "store"))), "test")
    made = make_calibration(work / "S20200107S0049_dark.fits", "F2", "processed_dark")
    written = caldb.store_calibration(made, "processed_dark", config=cfg)
    copy = work / "calibrations" / "processed_dark" / "S20200107S0049_dark.fits"
    assert written == [str(copy)] and copy.is_file()
    assert [f.path for f in db.list_files()] == [str(copy)]
    assert getonly.list_files() == []
    science = make_frame(work / "sci.fits", "F2", when=T0)
    assert caldb.get_calibration(science, "processed_dark", config=cfg) == str(copy)


def test_store_refuses_wrong_type_and_writes_nothing(db, work, config):
    flat = make_calibration(work / "x_flat.fits", "F2", "processed_flat")
    with pytest.raises(CalDBError, match="x_flat.fits: cannot store as processed_dark"):
        caldb.store_calibration(flat, "processed_dark", config=config)
    assert not (work / "calibrations").exists()
    assert db.list_files() == []


def test_frames_are_accepted_as_well_as_paths(db, work, config):
    db.add_cal(make_calibration(work / "five_dark.fits", "F2", "processed_dark", EXPTIME=5.0))
    frame = draconis.open(make_frame(work / "sci.fits", "F2", EXPTIME=20.0))
    assert best(frame, "processed_dark", config) is None
    assert best(frame.with_phu(EXPTIME=5.0), "processed_dark", config) == "five_dark.fits"
    match = caldb.find_calibration(frame.with_phu(EXPTIME=5.0), "processed_dark", config=config)
    assert match.md5 and match.caltype == "processed_dark" and match.path == str(work / "five_dark.fits")


def test_unknown_calibration_type_is_an_error(db, work, config):
    science = make_frame(work / "sci.fits", "F2")
    with pytest.raises(CalDBError, match="unknown calibration type 'processed_arcs'"):
        caldb.get_calibration(science, "processed_arcs", config=config)


def test_calibrations_from_simulated_raw_data(db, work, config):
    """Processed calibrations made from the simulator's raw frames are stored and found."""
    from draconis import simulate
    from draconis.io import write_fits

    simulate.make_dataset("gnirs-keyhole", work / "raw", size=64, seed=3)
    frames = [draconis.open(p) for p in sorted((work / "raw").rglob("*.fits"))]
    dark = next(f for f in frames if "DARK" in f.tags)
    flat = next(f for f in frames if "FLAT" in f.tags)
    science = next(f for f in frames if "IMAGE" in f.tags and "CAL" not in f.tags)
    dark_path = write_fits(dark.with_phu(PROCDARK="2026-01-01"), work / f"{dark.stem}_dark.fits")
    flat_path = write_fits(flat.with_phu(PROCFLAT="2026-01-01"), work / f"{flat.stem}_flat.fits")
    db.add_cal(dark_path)
    db.add_cal(flat_path)
    if science.exposure_time() == dark.exposure_time():
        assert caldb.get_calibration(science, "processed_dark", config=config) == str(dark_path)
    assert caldb.get_calibration(science, "processed_flat", config=config) == str(flat_path)


def test_validate_user_calibration(work):
    dark = make_calibration(work / "N20120102S0538_dark.fits", "GNIRS", "processed_dark")
    assert caldb.validate_calibration(dark, "processed_dark") == str(dark)
    with pytest.raises(CalDBError, match="N20120102S0538_dark.fits: not a processed_flat .*expected PROCESSED and FLAT"):
        caldb.validate_calibration(dark, "processed_flat")
    with pytest.raises(CalDBError, match="missing.fits: no such file"):
        caldb.validate_calibration(work / "missing.fits", "processed_dark")
