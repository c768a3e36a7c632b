"""GSAOI's static distortion: the packaged model (data/gsaoi_static_distortion.json) per array.

The model maps 1-based pixels of each full 2048 x 2048 array into one focal
plane (arcsec; ``u`` along +p, ``v`` along +q of the instrument, so east and
north at PA 0, as the arrays' mirrored header WCS shows: CD1_1 > 0 at PA 0).
Its forward polynomials come in components that add up (a linear part and
a cubic part); its backward polynomials invert them to ~0.02 pixel and only
start the exact (Newton) inversion.  Arrays are numbered in the raw files'
extension order (lookup.ARRAY_IDS).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from ...distortion import Poly2D, PolyMap, StaticDistortion
from .lookup import ARRAY_IDS

__all__ = ["MODEL_NAME", "load_model", "array_distortion"]

#: What DISTMODL says in headers whose WCS includes this model.
MODEL_NAME = "GSAOI static distortion"


@lru_cache(maxsize=1)
def load_model() -> dict:
    """The packaged model, parsed."""
    text = resources.files("draconis").joinpath("data/gsaoi_static_distortion.json").read_text()
    return json.loads(text)


def _summed(components: list[dict], index: int, axis: str) -> Poly2D:
    total = Poly2D.zero()
    for comp in components:
        total = total + Poly2D.from_terms(comp["parameters"][index][axis])
    return total


@lru_cache(maxsize=8)
def array_distortion(array_id: str) -> StaticDistortion:
    """The static distortion of array ``array_id`` (e.g. 'H2RG-032-074'); KeyError if unknown."""
    index = ARRAY_IDS.index(array_id) if array_id in ARRAY_IDS else None
    if index is None:
        raise KeyError(array_id)
    model = load_model()
    forward = PolyMap(_summed(model["forward"], index, "x"), _summed(model["forward"], index, "y"))
    backward = PolyMap(_summed(model["backward"], index, "x"), _summed(model["backward"], index, "y"))
    return StaticDistortion(MODEL_NAME, forward, backward)
