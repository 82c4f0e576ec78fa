"""The job loop every teacher runner shares; runners run in the teacher's own environment, without mtlmusic.

A runner is called as ``python RUNNER --jobs JOBS.tsv --out FOLDER``. Each line
of the job file is ``KEY<TAB>AUDIO PATH``. For each key without a result, the
runner writes ``FOLDER/KEY.npz`` (arrays) or, when the track fails,
``FOLDER/KEY.error`` (the message), each through a temporary file and a rename,
so an interrupted run resumes where it stopped. It prints one line per track:
``done KEY``, ``failed KEY`` or ``skipped KEY``.
"""

import argparse
import os
import sys
import traceback


def run_jobs(analyse, describe=""):
    """Parse the command line and call ``analyse(path) -> dict of arrays`` for every pending job.

    ``analyse`` may raise: the track is recorded as failed and the run goes on.
    """
    import numpy as np

    parser = argparse.ArgumentParser(description=describe)
    parser.add_argument("--jobs", required=True, help="TSV file: key, audio path")
    parser.add_argument("--out", required=True, help="Folder of the per-track results")
    parser.add_argument("--retry-failed", action="store_true", help="Analyse tracks that failed before again")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with open(args.jobs, encoding="utf-8") as handle:
        jobs = [line.rstrip("\n").split("\t", 1) for line in handle if line.strip()]
    for key, path in jobs:
        result = os.path.join(args.out, key + ".npz")
        error = os.path.join(args.out, key + ".error")
        if os.path.exists(result) or (os.path.exists(error) and not args.retry_failed):
            print("skipped", key, flush=True)
            continue
        try:
            arrays = analyse(path)
        except Exception as err:  # one bad track must not stop the run
            message = f"{path}: {type(err).__name__}: {err}"
            _write(error, lambda handle: handle.write(message.encode("utf-8")))
            print("failed", key, flush=True)
            traceback.print_exc(file=sys.stderr)
            continue
        if os.path.exists(error):
            os.remove(error)
        _write(result, lambda handle: np.savez(handle, **arrays))
        print("done", key, flush=True)


def _write(path, write):
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".partial")
    with open(tmp, "wb") as handle:
        write(handle)
    os.replace(tmp, path)
