"""``draconis reduce``: run a recipe on files, as DRAGONS' ``reduce``."""
from __future__ import annotations

import argparse
import os
import shlex

from ..errors import InputError


def add_parser(subparsers) -> None:
    """Register the ``reduce`` sub-command."""
    p = subparsers.add_parser("reduce", help="reduce files with a recipe",
                              description="Reduce files (or @lists of files) with the recipe their tags select.")
    p.add_argument("files", nargs="*", metavar="FILE", help="input files or @listfiles (the first decides the recipe)")
    p.add_argument("-r", "--recipe", default="_default",
                   help="recipe name, path/file.py:func user recipe, or a primitive run alone")
    p.add_argument("-p", "--param", nargs="+", action="extend", default=[], metavar="P=V",
                   help="parameter override: param=value or primitive:param=value")
    p.add_argument("--user_cal", nargs="+", action="extend", default=[], metavar="TYPE:FILE",
                   help="user calibration, e.g. processed_dark:x_dark.fits")
    p.add_argument("--suffix", default=None, help="suffix of the final outputs")
    p.add_argument("--logfile", default="reduce.log", help="log file (default reduce.log)")
    p.add_argument("--logmode", default="standard", choices=("standard", "quiet", "debug"), help="verbosity")
    p.add_argument("-c", "--config", default=None, help="calibration configuration file (draconisrc)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, 'synchronous' or 'threads' (default: a LocalCluster)")
    p.add_argument("--workdir", default=None,
                   help="where checkpoints go: a directory, or an fsspec URL (s3://bucket/prefix) every worker reaches "
                        "(default: draconis.workdir, .draconis)")
    p.add_argument("--resume", nargs="?", const="strict", default=None, metavar="auto",
                   help="continue the unfinished run of these inputs in the work directory from its last complete "
                        "checkpoint; refuses if anything changed, unless --resume=auto (then recomputes from the "
                        "first step that changed)")
    p.add_argument("--keep-checkpoints", action="store_true", default=None,
                   help="keep the checkpoints of a finished run (default: removed)")
    p.add_argument("--qa", action="store_const", const="qa", dest="mode", help="quality-assessment mode")
    p.add_argument("--ql", action="store_const", const="ql", dest="mode", help="quick-look mode")
    p.add_argument("--list", action="store_true", help="show the recipe that applies and its primitives, then stop")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="write the HTML report <first input>_report.html beside the outputs "
                        "(default: for science recipes, not for calibrations)")
    p.set_defaults(func=run, mode="sq")


def expand_at_files(items: list[str], _seen: tuple[str, ...] = ()) -> list[str]:
    """File names with ``@listfile`` entries expanded (comments, blank lines, nested @; order kept)."""
    out: list[str] = []
    for item in items:
        if not item.startswith("@"):
            out.append(item)
            continue
        path = item[1:]
        if not os.path.isfile(path):
            raise InputError(path, "no such list file")
        if os.path.abspath(path) in _seen:
            raise InputError(path, "list file includes itself")
        names = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line:
                    names.extend(line.split())
        out.extend(expand_at_files(names, (*_seen, os.path.abspath(path))))
    return out


def run(args: argparse.Namespace) -> int:
    """Run the ``reduce`` sub-command; return the exit status."""
    from .. import logutils
    from ..reduce import Reduce, normalize_ucals

    logutils.config(mode=args.logmode, file_name=args.logfile)
    files, resume = list(args.files), args.resume
    if resume not in (None, "strict", "auto"):
        # "--resume FILE ...": the optional value was the first input
        files, resume = [resume, *files], "strict"
    reducer = Reduce(expand_at_files(files), recipename=args.recipe, uparms=list(args.param),
                     ucals=normalize_ucals(args.user_cal), mode=args.mode, suffix=args.suffix,
                     config_file=args.config, scheduler=args.scheduler, workdir=args.workdir,
                     resume={"strict": True, "auto": "auto"}.get(resume, False),
                     keep_checkpoints=args.keep_checkpoints)
    reducer.report = args.report
    reducer.command = shlex.join(["draconis", *getattr(args, "argv", ["reduce", *args.files])])
    if args.list:
        return _list(reducer)
    outputs = reducer.runr()
    for name in outputs:
        print(name)
    return 0


def _list(reducer) -> int:
    from ..recipes.caller import record

    frames = reducer.open_inputs()
    recipe = reducer.choose_recipe(frames[0])
    print(f"Recipe {recipe.name} from library {recipe.library} for {frames[0].filename}")
    if recipe.func.__doc__:
        print(f"    {recipe.func.__doc__.strip().splitlines()[0]}")
    for call in record(recipe.func):
        print(f"  {call}")
    return 0
