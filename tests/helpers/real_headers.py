"""Build FITS files from the real Gemini header dumps in /work/shared/data/real-headers.

A dump holds the file name, an "AstroData Tags/Types" line from an earlier
astrodata, and blocks of 80-column cards introduced by ``--- PHU ---`` or
``--- HDU n ---``; the first block is the primary header.  :func:`write_fits`
writes the headers with zero-filled data of the NAXISn shape (uint8, to keep
files small), so draconis can open them like raw files.
"""
from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

REAL_HEADERS_DIR = Path("/work/shared/data/real-headers")

_STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "EXTEND", "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BLANK",
               "CHECKSUM", "DATASUM")


@dataclass
class HeaderDump:
    """The parsed content of one dump file."""

    name: str  # original file name without .bz2, e.g. 'S20230301S0170.fits'
    instrument_dir: str  # 'F2', 'NIRI', ...
    old_tags: frozenset[str] | None  # the astrodata tag set printed in the dump, if any
    phu: fits.Header
    extensions: list[fits.Header]


def dump_paths() -> list[Path]:
    """Every ``*.header`` dump, sorted."""
    return sorted(REAL_HEADERS_DIR.glob("*/*.header"))


def _card_header(lines: list[str]) -> fits.Header:
    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for line in lines:
            if not line.strip() or line.startswith("END"):
                continue
            card = fits.Card.fromstring(line[:80].ljust(80))
            try:
                card.verify("silentfix")
                header.append(card, end=True)
            except Exception:  # an unparsable card in the dump: skip it
                continue
    return header


def parse_dump(path: Path | str) -> HeaderDump:
    """Parse one header dump."""
    path = Path(path)
    text = path.read_text(errors="replace").splitlines()
    name = text[0].split(":", 1)[1].strip().removesuffix(".bz2") if text and text[0].startswith("Filename") \
        else path.name.removesuffix(".header")
    old_tags = None
    blocks: list[list[str]] = []
    for line in text:
        if line.startswith("AstroData Tags:"):
            old_tags = frozenset(ast.literal_eval(line.split(":", 1)[1].strip()))
        elif re.match(r"^--- (PHU|HDU \d+) ---", line):
            blocks.append([])
        elif line.startswith(("SIMPLE  =", "XTENSION=")) and (not blocks or blocks[-1]):
            # Dumps without '---' markers: each HDU starts with SIMPLE or XTENSION.
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    headers = [_card_header(block) for block in blocks]
    return HeaderDump(name, path.parent.name, old_tags, headers[0], headers[1:])


def _data_shape(header: fits.Header) -> tuple[int, ...]:
    naxis = int(header.get("NAXIS", 0))
    return tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))


def write_fits(dump: HeaderDump, directory: Path | str) -> Path:
    """Write ``dump`` as a FITS file in ``directory`` (zero data of the NAXISn shape)."""
    phu = fits.Header([c for c in dump.phu.cards if c.keyword not in _STRUCTURAL])
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [fits.PrimaryHDU(header=phu)]
    for ext in dump.extensions:
        shape = _data_shape(ext)
        header = fits.Header([c for c in ext.cards if c.keyword not in _STRUCTURAL
                              and not c.keyword.startswith("NAXIS")])
        data = np.zeros(shape, dtype=np.uint8) if shape else None
        hdus.append(fits.ImageHDU(data=data, header=header))
    out = Path(directory) / dump.name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        fits.HDUList(hdus).writeto(out, overwrite=True, output_verify="silentfix")
    return out


def read_headers(path: Path | str) -> tuple[fits.Header, list[fits.Header]]:
    """(PHU, pixel-extension headers) of a FITS file, as draconis' frame would pass them."""
    with fits.open(path) as hdul:
        phu = hdul[0].header.copy()
        exts = [h.header.copy() for h in hdul[1:] if h.header.get("NAXIS", 0) > 0]
    return phu, exts
