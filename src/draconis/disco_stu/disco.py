"""The disco stack: GSAOI ``_skyCorrected`` frames -> one distortion-corrected, stacked image.

:func:`disco` checks its inputs (GSAOI, four arrays, reduced, one filter; a
reference catalogue that overlaps them), turns its arguments into parameters
of the GSAOI alignment and stacking primitives and runs :func:`disco_recipe`
through :class:`draconis.reduce.Reduce`, so the output is written only when
everything succeeded and the work runs out-of-core on the configured Dask
cluster.
"""
from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import InputError, ParameterError
from ..recipes.image_gsaoi import align_and_stack
from .lookups import general_parameters as defaults

__all__ = ["MatchInfo", "disco", "disco_recipe", "check_inputs", "output_name"]

#: How catalogues are matched (the tutorial builds these): radii in arcsec, polynomial degree.
MatchInfo = namedtuple("MatchInfo", ["offset_radius", "match_radius", "min_matches", "degree"])

#: Stacking combinations disco offers (stackFrames' ``operation``).
COMBINE = ("mean", "wtmean", "median", "lmedian")
#: Rejections disco offers (stackFrames' ``reject_method``).
REJECT = ("none", "minmax", "sigclip", "varclip")


def disco_recipe(p) -> None:
    """Sources, then alignAndStack's steps (reference catalogue ... stack), then the write."""
    p.detectSources()
    align_and_stack(p)
    p.writeOutputs()


def output_name(output_identifier: str | None = None, output: str | None = None) -> str:
    """The output file: ``output``, else ``<output_identifier>.fits``, else disco_stack.fits."""
    if output:
        return os.fspath(output)
    if output_identifier:
        name = os.fspath(output_identifier)
        return name if name.lower().endswith((".fits", ".fit", ".fits.gz")) else f"{name}.fits"
    return defaults.OUTPUT


def disco(infiles: Iterable[str] | str, output_identifier: str | None = None, objmatch_info: Any = None,
          refmatch_info: Any = None, pixel_scale: float = defaults.PIXEL_SCALE, skysub: bool = False, *,
          output: str | None = None, refcat: str | None = None, combine: str = "mean",
          reject: str = "sigclip", scale: bool = False, uparms: Sequence[tuple[str, Any]] | None = None,
          scheduler: str | None = None, workdir: str | None = None, report: bool | None = None) -> str:
    """Stack GSAOI frames onto one distortion-corrected grid; return the output file name.

    Parameters
    ----------
    infiles
        The ``_skyCorrected`` frames (or any reduced GSAOI frames; sources are
        detected where a frame has no catalogue).
    output_identifier
        Output name without ``.fits`` (disco_stu's name); ``output`` gives a
        full file name instead.  Default disco_stack.fits.
    objmatch_info, refmatch_info
        :class:`MatchInfo` (or any object with offset_radius, match_radius,
        min_matches, degree) for matching the frames to each other and to the
        reference catalogue; None fields keep the defaults of
        :mod:`~draconis.disco_stu.lookups.general_parameters`.
    pixel_scale
        Output pixel scale (arcsec).
    skysub
        disco_stu can subtract the sky itself; draconis stacks frames that
        draconis reduce has sky-subtracted, so only False is accepted.
    refcat
        A reference catalogue file (ECSV, FITS table... with RA/Dec columns
        in degrees) for absolute astrometry; without one only the frames'
        relative distortion is corrected and the reference frame's header
        fixes the absolute position.
    combine, reject
        stackFrames' operation and reject_method.
    scale
        Scale each frame's counts to the reference's (scaleCountsToReference);
        off by default: frames of one sequence share exposure time and gain.
    uparms
        More ``("primitive:parameter", value)`` overrides, as ``Reduce.uparms``.
    scheduler, workdir, report
        As :class:`draconis.reduce.Reduce` (the HTML report of the run is
        written beside the output, as ``<output stem>_report.html``, unless
        ``report=False``).

    Raises
    ------
    InputError
        A file that is not a reduced four-array GSAOI frame, frames of
        different filters, or a reference catalogue that misses the field.
    ParameterError
        An unknown combination, rejection or parameter.
    """
    from ..io import open_frame
    from ..reduce import Reduce

    if skysub:
        raise ParameterError("disco: skysub=True is not available: reduce the frames to _skyCorrected with "
                             "draconis reduce (which subtracts the sky) and stack those")
    if combine not in COMBINE:
        raise ParameterError(f"disco: combine {combine!r} is not one of {', '.join(COMBINE)}")
    if reject not in REJECT:
        raise ParameterError(f"disco: reject {reject!r} is not one of {', '.join(REJECT)}")
    files = [os.fspath(infiles)] if isinstance(infiles, (str, os.PathLike)) else [os.fspath(f) for f in infiles]
    frames = [open_frame(f) for f in files]
    check_inputs(frames)
    table = None
    if refcat is not None:
        table = read_refcat(refcat)
        check_overlap(table, frames, refcat)
    out = output_name(output_identifier, output)
    params = _parameters(frames, objmatch_info, refmatch_info, pixel_scale, refcat, combine, reject, scale, out)
    # the frames opened for the checks are handed on: a GSAOI file's four catalogues are read once
    reducer = Reduce(frames, recipename=f"{__name__}.disco_recipe", uparms=params + list(uparms or []),
                     scheduler=scheduler, workdir=workdir)
    reducer.report = report
    # named after the stack, not its first input: that name is the report of the reduction that made the
    # _skyCorrected frames, which a report named after them would overwrite
    reducer.report_stem = os.path.join(os.path.dirname(out), report_stem(out))  # beside the stack
    reducer.runr()
    return out


def report_stem(output: str) -> str:
    """The stem of disco's report, ``<stem>_report.html``: the output's file name without its extension."""
    name = os.path.basename(os.fspath(output))
    for ext in (".fits.gz", ".fits", ".fit"):
        if name.lower().endswith(ext):
            return name[:-len(ext)]
    return name


def _parameters(frames, objmatch, refmatch, pixel_scale, refcat, combine, reject, scale, out) -> list:
    obj = _match(objmatch, defaults.OBJCAT_ALIGN_RADIUS, defaults.OBJCAT_POLY_DEGREE, None)
    ref = _match(refmatch, defaults.REFCAT_ALIGN_RADIUS, defaults.REFCAT_POLY_DEGREE, defaults.REFCAT_MIN_MATCHES)
    params: list[tuple[str, Any]] = [
        ("adjustWCSToReference:first_pass", obj.offset_radius), ("adjustWCSToReference:match_radius", obj.match_radius),
        ("adjustWCSToReference:order", obj.degree),
        ("determineAstrometricSolution:initial", ref.offset_radius),
        ("determineAstrometricSolution:final", ref.match_radius), ("determineAstrometricSolution:order", ref.degree),
        ("resampleToCommonFrame:pixel_scale", pixel_scale),
        ("stackFrames:operation", combine), ("stackFrames:reject_method", reject),
        ("writeOutputs:outfilename", out),
    ]
    if obj.min_matches is not None:
        params.append(("adjustWCSToReference:min_sources", obj.min_matches))
    if refcat is not None:
        params.append(("addReferenceCatalog:source", os.fspath(refcat)))
        params.append(("determineAstrometricSolution:min_matches", max(3, int(ref.min_matches))))
    if not scale:
        params.append(("scaleCountsToReference:skip_primitive", True))
    if all(ext.objcat is not None for f in frames for ext in f.extensions):
        params.append(("detectSources:skip_primitive", True))  # the _skyCorrected frames have their catalogues
    return params


def _match(info: Any, radii: tuple[float, float], degree: int, min_matches: int | None) -> MatchInfo:
    if info is None:
        return MatchInfo(radii[0], radii[1], min_matches, degree)
    values = [getattr(info, name, None) for name in MatchInfo._fields]
    fallback = (radii[0], radii[1], min_matches, degree)
    return MatchInfo(*(v if v is not None else d for v, d in zip(values, fallback)))


def check_inputs(frames: Sequence) -> None:
    """InputError (one line, naming the file) unless every frame is a reduced GSAOI frame with four arrays."""
    from ..primitives.align import check_same_setup

    if not frames:
        raise InputError(None, "disco: no input files given")
    for frame in frames:
        path = frame.path or frame.filename
        instrument = frame.safe_descriptor("instrument")
        if "GSAOI" not in frame.tags:
            raise InputError(path, f"is a {instrument or 'non-GSAOI'} frame; disco stacks GSAOI frames only")
        if len(frame) != 4:
            raise InputError(path, f"has {len(frame)} pixel extension(s) where GSAOI frames have 4 (an array is "
                                   "missing); disco needs all four arrays of every frame")
        if "PREPARED" not in frame.tags:
            raise InputError(path, "is a raw frame: give disco frames reduced by draconis reduce "
                                   "(the _skyCorrected files)")
    check_same_setup(frames)


def read_refcat(path: str):
    """The reference catalogue table at ``path`` (InputError naming it if unreadable or without RA/Dec)."""
    from astropy.table import Table

    from ..primitives.align import refcat_columns

    if not os.path.isfile(path):
        raise InputError(path, "no such reference catalogue file")
    try:
        table = Table.read(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise InputError(path, f"cannot be read as a table: {err}") from err
    if refcat_columns(table) is None:
        raise InputError(path, f"has no RA/Dec columns (RAJ2000/DEJ2000, RA/DEC or ra/dec); it has "
                               f"{', '.join(table.colnames[:8])}")
    return table


def check_overlap(table, frames: Sequence, path: str) -> None:
    """InputError naming ``path`` when no source of the catalogue falls on any array of ``frames``."""
    from ..primitives.align import refcat_in_field

    if not refcat_in_field(table, frames).any():
        raise InputError(path, f"none of its {len(table)} sources lies in the field of the {len(frames)} "
                               "frame(s): a reference catalogue of another field?")
