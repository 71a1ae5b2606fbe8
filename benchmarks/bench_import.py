"""Benchmark figure: import and preparation of a 128 × 128 × 32 MRE exam.

8 phase offsets, 3 motion-encoding directions, 4 frequencies: 3072 phase + 3072 magnitude
classic DICOM files written by the simulator (not timed), then ``import_exam`` timed per
unwrapping method. Not part of the test suite; run it explicitly::

    OMP_NUM_THREADS=1 python benchmarks/bench_import.py [--workers 2] [--nifti]
"""

from __future__ import annotations

import argparse
import json

from napari_mrepinn.acquisition import benchmark_import


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--nifti", action="store_true", help="dcm2niix-style NIfTI instead")
    parser.add_argument("--unwrap", nargs="+", default=["laplacian", "skimage", "none"])
    args = parser.parse_args()
    result = benchmark_import(unwrap=args.unwrap, workers=args.workers,
                              fmt="nifti" if args.nifti else "dicom")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
