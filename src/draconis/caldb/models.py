"""The database schema (SQLAlchemy 2 declarative).

One row per stored calibration file, keyed by its absolute path, with the
descriptor values the association rules (:mod:`draconis.caldb.rules`) match
on, as they were when the file was added.  Per-array descriptors (data
section, array names) are stored as one canonical text so that "same ROI"
is plain string equality in SQL.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Calibration", "SchemaInfo", "SCHEMA_VERSION"]

#: bumped whenever a column changes meaning; checked when a database is opened
SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    """Declarative base of the calibration-database tables."""


class SchemaInfo(Base):
    """One row saying which schema version wrote this database."""

    __tablename__ = "draconis_schema"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    created: Mapped[dt.datetime] = mapped_column(DateTime)


class Calibration(Base):
    """A processed calibration (dark, flat, BPM, standard) known to the database."""

    __tablename__ = "calibration"
    __table_args__ = (
        UniqueConstraint("path", name="uq_calibration_path"),
        Index("ix_calibration_lookup", "caltype", "instrument", "ut_epoch"),
        Index("ix_calibration_filename", "filename"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # identity of the file
    filename: Mapped[str] = mapped_column(String(255))
    directory: Mapped[str] = mapped_column(String(4096))
    path: Mapped[str] = mapped_column(String(4096))
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    ingested: Mapped[dt.datetime] = mapped_column(DateTime)
    # what it is
    caltype: Mapped[str] = mapped_column(String(32))
    instrument: Mapped[str] = mapped_column(String(16))
    observation_type: Mapped[str | None] = mapped_column(String(32))
    observation_class: Mapped[str | None] = mapped_column(String(32))
    observation_id: Mapped[str | None] = mapped_column(String(64))
    data_label: Mapped[str | None] = mapped_column(String(80))
    qa_state: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[str] = mapped_column(String(1024))
    # when: ut_epoch (seconds since 1970, UTC) makes |dt| portable SQL arithmetic
    ut_datetime: Mapped[dt.datetime] = mapped_column(DateTime)
    ut_epoch: Mapped[float] = mapped_column(Float)
    # descriptors the association rules match on
    exposure_time: Mapped[float | None] = mapped_column(Float)
    coadds: Mapped[int | None] = mapped_column(Integer)
    read_mode: Mapped[str | None] = mapped_column(String(64))
    well_depth_setting: Mapped[str | None] = mapped_column(String(32))
    filter_name: Mapped[str | None] = mapped_column(String(128))
    camera: Mapped[str | None] = mapped_column(String(64))
    lyot_stop: Mapped[str | None] = mapped_column(String(64))
    disperser: Mapped[str | None] = mapped_column(String(64))
    focal_plane_mask: Mapped[str | None] = mapped_column(String(64))
    central_wavelength: Mapped[float | None] = mapped_column(Float)
    array_name: Mapped[str | None] = mapped_column(String(256))
    data_section: Mapped[str | None] = mapped_column(String(512))
    detector_section: Mapped[str | None] = mapped_column(String(512))
    detector_roi_setting: Mapped[str | None] = mapped_column(String(64))
    binning: Mapped[str | None] = mapped_column(String(16))
    gcal_lamp: Mapped[str | None] = mapped_column(String(32))

    def __repr__(self) -> str:
        return f"<Calibration {self.caltype} {self.path}>"
