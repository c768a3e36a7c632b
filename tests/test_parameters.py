"""Parameter declarations: shared groups, unsupported parameters, runner-opened files, explicit flow."""
from __future__ import annotations

import dataclasses

import pytest

from draconis.errors import ParameterError
from draconis.kernels.combine import CombineSpec
from draconis.primitives.registry import get_primitive
from draconis.primitives.stack import COMBINE, STACK

STACKERS = ("stackFrames", "stackDarks", "stackFlats", "makeLampFlat", "skyCorrect")


def _declared(name: str) -> dict:
    return {p.name: p for p in get_primitive(name).params}


@pytest.mark.parametrize("name", STACKERS)
def test_stackers_take_the_one_stack_group(name):
    declared = _declared(name)
    for group_param in STACK:
        if group_param.name not in declared:
            continue
        mine = declared[group_param.name]
        # everything but the default (and whether it is refused) comes from the one declaration
        same = dataclasses.replace(mine, default=group_param.default, unsupported=group_param.unsupported)
        assert same == group_param, (name, group_param.name)
    assert set(COMBINE.names()) <= set(declared)


def test_combine_group_is_the_kernel_spec():
    fields = {f.name: f.default for f in dataclasses.fields(CombineSpec)}
    assert {p.name: p.default for p in COMBINE} == fields
    params = get_primitive("skyCorrect").resolve(None, None, {"nlow": 2})
    spec = CombineSpec.from_params(params)
    assert (spec.operation, spec.reject_method, spec.nlow, spec.nhigh) == ("median", "minmax", 2, 1)
    darks = CombineSpec.from_params(get_primitive("stackDarks").resolve(None, None))
    assert darks.reject_method == "varclip"


def test_unsupported_parameter_is_refused_by_name_unless_default():
    spec = get_primitive("stackDarks")
    assert spec.resolve(None, None, {"statsec": None})["statsec"] is None
    with pytest.raises(ParameterError, match=r"stackDarks:statsec is not supported .*never normalises"):
        spec.resolve(None, None, {"statsec": "[1:10,1:10]"})
    with pytest.raises(ParameterError, match="stackFrames:save_rejection_map is not supported"):
        get_primitive("stackFrames").resolve(None, None, {"save_rejection_map": "True"})
