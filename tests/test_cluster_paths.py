"""Relative paths on an external cluster whose workers run in another directory (issue 12).

A small F2 reduction (a user recipe: prepare .. addVAR, flushPixels,
stackFrames; two zarr checkpoints) is run from a directory holding the raw
files, an @list of relative names and the default relative workdir, against
``dask scheduler`` + ``dask worker`` processes started in another directory:

* the outputs equal a synchronous run's, and nothing is left in the workers'
  directory (checkpoints are written where the client reads them);
* a worker that cannot see the workdir (it runs in its own mount namespace
  where that directory is an empty tmpfs) is detected before any work: one
  line on stderr naming the directory, exit status 1, no output.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).parent))
from helpers.dask_processes import scheduler_process, worker_processes  # noqa: E402

from draconis.cli import main

RECIPE = '''
def quick(p):
    p.prepare()
    p.addDQ()
    p.ADUToElectrons()
    p.addVAR(read_noise=True, poisson_noise=True)
    p.flushPixels()
    p.stackFrames()
    p.writeOutputs()
'''


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Four simulated F2 science frames (64 px), a relative @list of them and the recipe file."""
    from draconis.simulate import make_dataset

    where = tmp_path_factory.mktemp("raw")
    make_dataset("f2-deep", where / "all", size=64, seed=1, nframes=4)
    names = sorted(p.name for p in (where / "all").glob("S20200104S00*.fits"))[:4]
    for name in names:
        shutil.copy(where / "all" / name, where / name)
    (where / "sci.list").write_text("\n".join(names) + "\n")
    (where / "mini.py").write_text(RECIPE)
    return where


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and one worker started in a directory of their own."""
    cwd = tmp_path_factory.mktemp("workers_cwd")
    scratch = tmp_path_factory.mktemp("scratch")
    with scheduler_process(cwd) as address, worker_processes(address, cwd, scratch):
        yield address, cwd


def _planes(path: Path) -> np.ndarray:
    with fits.open(path) as hdul:
        return np.stack([hdul["SCI"].data, hdul["VAR"].data, hdul["DQ"].data.astype(np.float32)])


def _run_here(raw: Path, directory: Path, monkeypatch, scheduler: str, *extra: str) -> int:
    """``draconis reduce @sci.list -r mini.py:quick`` from ``directory`` (a copy of the raw directory)."""
    shutil.copytree(raw, directory)
    monkeypatch.chdir(directory)
    monkeypatch.setenv("HOME", str(directory))
    return main(["reduce", "@sci.list", "-r", "mini.py:quick", "--scheduler", scheduler, "--logfile", "", *extra])


def test_relative_names_and_workdir_on_workers_elsewhere(raw, cluster, tmp_path, monkeypatch, capsys):
    address, workers_cwd = cluster
    assert _run_here(raw, tmp_path / "sync", monkeypatch, "synchronous") == 0
    assert _run_here(raw, tmp_path / "remote", monkeypatch, address) == 0
    (out,) = capsys.readouterr().out.split()[-1:]
    assert out.endswith("_stack.fits")
    expected, got = _planes(tmp_path / "sync" / out), _planes(tmp_path / "remote" / out)
    assert np.isfinite(expected).all() and expected[0].std() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert list(workers_cwd.iterdir()) == []
    assert not (tmp_path / "remote" / ".draconis").exists()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a worker with its own mounts")
def test_workdir_the_workers_cannot_see_is_refused_before_any_work(raw, tmp_path, monkeypatch, capsys):
    private = tmp_path / "private"
    private.mkdir()
    # The worker's view of `private` is an empty tmpfs: what a worker on another host without the share sees.
    hide = ["unshare", "-Urm", "--propagation", "private", "sh", "-c", f'mount -t tmpfs tmpfs "{private}" && exec "$0" "$@"']
    if subprocess.run([*hide, "true"], capture_output=True).returncode != 0:
        pytest.skip("unprivileged mount namespaces are not allowed here")
    cwd = tmp_path / "workers_cwd"
    cwd.mkdir()
    with scheduler_process(cwd) as address, worker_processes(address, cwd, tmp_path, prefix=hide):
        status = _run_here(raw, tmp_path / "run", monkeypatch, address, "--workdir", str(private / "wd"))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and "cannot see the working directory" in err[0] and str(private / "wd") in err[0], err
    assert not list((tmp_path / "run").glob("*_stack.fits"))
    assert not (private / "wd").exists()  # the probe is removed, and the directory it needed
