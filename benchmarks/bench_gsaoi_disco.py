"""Benchmark: ``draconis disco`` on GSAOI sequences (4 arrays per frame), against reproject_and_coadd.

For each sequence length (default 16 and 100 frames of 4 x 2048x2048) the script

1. makes ``_skyCorrected`` frames (untimed, cached in ``--inputs``): the
   simulator's gsaoi-galaxy on-target frames (up to 16 distinct ones; longer
   sequences reuse them under new file names, as a long dither sequence
   repeats its pattern), prepared, in electrons, with VAR, the true sky level
   subtracted and sources detected;
2. runs ``draconis.disco`` (alignment of the four arrays' merged catalogues,
   resampling through the static distortion, mean + sigma-clipping stack, the
   FITS write; no HTML report) on a LocalCluster of ``--workers`` x ``--mem``: wall time,
   frames/s, peak RSS of every worker, whether a worker was restarted;
3. makes the same mosaic with the ``reproject`` package in a separate
   process, as a user would: ``reproject_and_coadd`` with ``reproject_interp``
   (bilinear) onto disco's output grid, each array through the WCS disco
   aligned it with (the same SIP WCS), mean combination; wall time and peak
   RSS;

and prints both and the ratios.  reproject neither rejects outliers nor
propagates VAR and DQ nor conserves flux through the Jacobian; disco does all
of that, so the ratios are conservative for draconis.

Usage::

    python benchmarks/bench_gsaoi_disco.py [--frames 16 100] [--size 2048] [--mem 2GiB] [--workers 2]
           [--inputs DIR] [--no-reproject]
"""
from __future__ import annotations

import argparse
import glob
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time

MIB = 2 ** 20
UNIQUE = 16  # distinct simulated frames; longer sequences reuse them
EFFECTS = {"flat": False, "dark_current": False, "bias": False, "nonlinearity": False, "cosmic_rays": False,
           "sky_drift": False}


def sky_corrected(directory: str, size: int, n_unique: int) -> list[str]:
    """``n_unique`` simulated, reduced on-target frames in ``directory`` (made once, then reused)."""
    import numpy as np
    from astropy.table import Table

    import draconis
    from draconis.reduce.context import RunContext
    from draconis.simulate import make_dataset

    done = sorted(glob.glob(os.path.join(directory, "*_skyCorrected.fits")))
    if len(done) >= n_unique:
        return done[:n_unique]
    nframes = max(2, int(np.ceil((16 * n_unique - 15) / 9)))  # the first 9/16 of gsaoi-galaxy are on target
    info = make_dataset("gsaoi-galaxy", os.path.join(directory, "raw"), size=size, nframes=nframes, seed=3,
                        effects=EFFECTS, roles=("science",))
    sky = {r["file"]: float(r["sky_e"]) for r in Table.read(os.path.join(info.truth_dir, "frames.ecsv"))}
    ctx = RunContext({"main": [draconis.open(p) for p in info.files["science"][:n_unique]]},
                     workdir=os.path.join(directory, "work"), outdir=directory)
    ctx.run("prepare")
    ctx.run("addDQ", static_bpm=None)
    ctx.run("ADUToElectrons")
    ctx.run("addVAR", read_noise=True, poisson_noise=True)
    def minus_sky(frame):
        level = np.float32(sky[frame.stem + ".fits"])
        return frame.map_extensions(lambda e: e.with_planes(SCI=e.plane("SCI") - level))

    ctx.set_stream("main", [minus_sky(f) for f in ctx.stream("main")])
    ctx.run("detectSources")
    ctx.run("writeOutputs", suffix="_skyCorrected", strip=True)
    ctx.close(True)
    shutil.rmtree(os.path.join(directory, "raw"), ignore_errors=True)
    return sorted(glob.glob(os.path.join(directory, "*_skyCorrected.fits")))[:n_unique]


def sequence(unique: list[str], n: int, directory: str) -> list[str]:
    """``n`` input files: the unique frames, then links to them under new raw names (new ORIGNAME)."""
    from astropy.io import fits

    files = list(unique[:n])
    for k in range(len(files), n):
        src = unique[k % len(unique)]
        stem = f"S20170506S{k:04d}"
        dst = os.path.join(directory, f"{stem}_skyCorrected.fits")
        with fits.open(src) as hdul:
            hdul[0].header["ORIGNAME"] = f"{stem}.fits"
            hdul.writeto(dst, overwrite=True)
        files.append(dst)
    return files


def run_disco(files: list[str], out: str, address: str, workdir: str) -> float:
    """Time draconis.disco (the GSAOI mosaic) on the cluster at ``address``; seconds."""
    import draconis

    t0 = time.perf_counter()
    draconis.disco(files, output=out, scheduler=address, workdir=workdir, report=False)
    return time.perf_counter() - t0


def aligned_headers(files: list[str], workdir: str) -> list[list]:
    """Each frame's array headers as disco aligns them (the catalogue-only steps; no pixels)."""
    import draconis
    from draconis.reduce.context import RunContext

    ctx = RunContext({"main": [draconis.open(p) for p in files]}, workdir=workdir, instrument="GSAOI", kind="IMAGE")
    aligned = ctx.run("adjustWCSToReference", first_pass=3.0, match_radius=0.5, order=3)
    by_stem = {f.stem: [e.header for e in f.extensions] for f in aligned}
    return [by_stem[draconis.open(p).stem] for p in files]


def _reproject_child(files, headers, out_header, shape, out_path, queue) -> None:
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    t0 = time.perf_counter()
    inputs = []
    handles = [fits.open(p, memmap=True) for p in files]
    for hdul, hdrs in zip(handles, headers):
        sci = [h for h in hdul if h.header.get("EXTNAME") == "SCI"]
        for hdu, header in zip(sci, hdrs):
            inputs.append((hdu.data, WCS(header)))
    array, footprint = reproject_and_coadd(inputs, WCS(out_header), shape_out=shape,
                                           reproject_function=reproject_interp, combine_function="mean",
                                           match_background=False)
    fits.PrimaryHDU(array.astype(np.float32), header=out_header).writeto(out_path, overwrite=True)
    for h in handles:
        h.close()
    queue.put((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               float(np.mean(footprint > 0))))


def run_reproject(files: list[str], stack: str, workdir: str) -> dict:
    """reproject_and_coadd of the same arrays onto disco's grid, in a child process (its own peak RSS)."""
    import draconis

    headers = aligned_headers(files, os.path.join(workdir, "align"))
    out = draconis.open(stack)[0]
    grid = {k: out.header[k] for k in ("CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2",
                                       "CD2_1", "CD2_2")}
    from astropy.io import fits

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_reproject_child, args=(files, headers, fits.Header(grid), out.shape,
                                                      os.path.join(workdir, "reproject_stack.fits"), queue))
    proc.start()
    seconds, peak, covered = queue.get()
    proc.join()
    return {"time": seconds, "peak": peak, "covered": covered}


def main(argv=None) -> None:
    """The command line: see the module docstring."""
    import distributed
    from dask.utils import parse_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 100])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--mem", default="2GiB", help="memory limit per worker")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--inputs", default=None, help="directory of (cached) _skyCorrected inputs")
    parser.add_argument("--no-reproject", action="store_true")
    args = parser.parse_args(argv)
    mem = int(parse_bytes(args.mem))
    inputs = args.inputs or os.path.join(tempfile.gettempdir(), f"bench_gsaoi_inputs_{args.size}")
    os.makedirs(inputs, exist_ok=True)
    t0 = time.perf_counter()
    unique = sky_corrected(inputs, args.size, min(UNIQUE, max(args.frames)))
    print(f"inputs: {len(unique)} distinct _skyCorrected frames of 4 x {args.size}^2 in {inputs} "
          f"({time.perf_counter() - t0:.0f} s, untimed)")
    for n in args.frames:
        workdir = tempfile.mkdtemp(prefix=f"bench_gsaoi_disco_{n}_")
        try:
            files = sequence(unique, n, workdir)
            stack = os.path.join(workdir, "disco_stack.fits")
            with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=mem,
                                          processes=True, dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                pids = client.run(os.getpid)
                seconds = run_disco(files, stack, cluster.scheduler_address, os.path.join(workdir, "work"))
                peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                restarted = client.run(os.getpid) != pids
            import draconis

            shape = draconis.open(stack)[0].shape
            print(f"\n== GSAOI disco, {n} frames of 4 x {args.size}^2 onto {shape[1]}x{shape[0]}; "
                  f"{args.workers} workers x {mem / MIB:.0f} MiB")
            print(f"draconis disco: {seconds:.1f} s ({n / seconds:.3f} frames/s); peak RSS per worker (MiB): "
                  + ", ".join(f"{v / MIB:.0f}" for v in peaks.values())
                  + f"; client {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
                  f"workers restarted: {restarted}")
            if not args.no_reproject:
                r = run_reproject(files, stack, workdir)
                print(f"reproject_and_coadd (reproject_interp, mean): {r['time']:.1f} s ({n / r['time']:.3f} "
                      f"frames/s), peak RSS {r['peak'] / MIB:.0f} MiB, {100 * r['covered']:.1f} % of the grid covered")
                print(f"ratios draconis/reproject: time {seconds / r['time']:.3f} "
                      f"(speed-up {r['time'] / seconds:.2f}x); "
                      f"peak memory largest worker / reproject {max(peaks.values()) / r['peak']:.2f}, all workers / "
                      f"reproject {sum(peaks.values()) / r['peak']:.2f}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
