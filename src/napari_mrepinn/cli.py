"""The ``mrepinn`` command: simulate phantoms, run baselines, fit the PINN, evaluate, benchmark.

Every subcommand reads and writes the project's NetCDF files (see ``CONTRIBUTING.md``).
Bad input ends with one line ``mrepinn: error: ...`` and exit status 2; Ctrl-C stops long
work with exit status 130 and leaves existing files untouched.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .data import MREExample, MREInputError, MREPlausibilityWarning

__all__ = ["main"]

#: noise of the built-in demo (``mrepinn fit`` without INPUT): a realistic acquisition, where
#: direct inversion suffers and the PINN shows why it exists
DEMO_NOISE_RATIO = 1e-3
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------------- helpers
def _load(args: argparse.Namespace, path: str | None = None) -> MREExample:
    """Read ``path`` (default ``args.input``) with the reading flags applied at load time."""
    from .io import load_example

    spacing = getattr(args, "spacing", None)
    return load_example(
        path or args.input,
        frequency=getattr(args, "frequency", None),
        spacing=None if spacing is None else [v * 1e-3 for v in spacing],  # mm -> m
        components=getattr(args, "components", None),
    )


def _add_reading_flags(p: argparse.ArgumentParser, frequency_help: str) -> None:
    """The metadata flags of every command that reads a file (applied at load time)."""
    # NaN and the like pass here: load_example refuses them with the file's name
    p.add_argument("--frequency", type=float, help=frequency_help)
    p.add_argument("--spacing", type=float, nargs="+", metavar="MM",
                   help="voxel spacing in mm (one value, or one per axis x y [z]); "
                   "overrides or supplies what the file says")
    p.add_argument("--components", nargs="+", metavar="AXIS",
                   help="labels of the wave's components, e.g. x y z")


class _Outputs:
    """What a command means to write and what it has written, for an honest message when
    it is stopped (Ctrl-C) or fails half-way."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.planned: list[str] = []
        self.written: list[str] = []

    def wrote(self, path: str | Path) -> None:
        self.written.append(str(path))
        print(f"wrote {path}")

    def summary(self) -> str:
        if not self.written:
            return "no output was written"
        missing = [p for p in self.planned if p not in self.written]
        text = f"{', '.join(self.written)} {'was' if len(self.written) == 1 else 'were'} written"
        if missing:
            text += f"; {', '.join(missing)} {'was' if len(missing) == 1 else 'were'} not"
        return text


_OUTPUTS = _Outputs()


def _input_bytes(*inputs: str | None) -> int:
    total = 0
    for given in inputs:
        if given is None:
            continue
        p = Path(given)
        try:
            files = [f for f in p.iterdir() if f.is_file()] if p.is_dir() else [p]
            total += sum(f.stat().st_size for f in files)
        except OSError:
            continue
    return total


def _check_output(output: str, *inputs: str | None) -> Path:
    from .outputs import check_writable

    out = Path(output)
    for given in inputs:
        if given is not None and Path(given).resolve() == out.resolve():
            raise MREInputError(
                f"{output}: the output would overwrite the input; choose another -o name."
            )
    if out.exists() and out.is_dir():
        raise MREInputError(f"{output}: is a folder; give a file name ending in .nc.")
    if out.suffix != ".nc":
        raise MREInputError(f"{output}: results are NetCDF files; use a name ending in .nc.")
    # before any work: a folder that is missing, read-only or full fails now, not after
    # training; results hold the input plus the maps (about twice a NetCDF input)
    check_writable(out, need_bytes=2 * _input_bytes(*inputs) + (1 << 20))
    _OUTPUTS.planned.append(str(out))
    return out


def _save(example: MREExample, out: Path) -> None:
    example.save(out)
    _OUTPUTS.wrote(out)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`~napari_mrepinn.config.TrainingConfig` field (the option table);
    a flag left out keeps the config's value."""
    from .config import options

    g = p.add_argument_group(
        "training options (defaults: the recipe; see napari_mrepinn.TrainingConfig)")
    g.add_argument("--config", metavar="FILE",
                   help="a JSON file of training options (as --print-config writes); "
                   "flags override it")
    for opt in options():
        if not opt.cli:
            continue
        unit = f" [{opt.unit}]" if opt.unit else ""
        help_ = f"{opt.help}{unit} (default: {_default_text(opt.default)})"
        kw: dict = {"dest": opt.name, "default": None, "help": help_}
        # values stay text here: the config checks them, one message for every bad value
        if opt.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif opt.choices:
            kw["metavar"] = "{" + ",".join(map(str, opt.choices)) + "}"
        elif opt.name == "loss_weights":
            kw["metavar"] = "W,E,P[,A]"
        else:
            kw["metavar"] = opt.type.__name__.upper()
        g.add_argument(opt.flag, **kw)


def _default_text(value: object) -> str:
    from .config import LossWeights

    if isinstance(value, LossWeights):
        return ",".join(f"{w:g}" for w in value.as_list())
    return "auto" if value is None else str(value)


def _config(args: argparse.Namespace):
    """The :class:`TrainingConfig` of a command: ``--config`` file, then the flags."""
    from .config import TrainingConfig, options

    base = TrainingConfig.load(args.config) if args.config else TrainingConfig()
    given = {o.name: getattr(args, o.name) for o in options()
             if o.cli and getattr(args, o.name, None) is not None}
    return base.replace(**given).check()


# ---------------------------------------------------------------------- subcommands
def cmd_simulate(args: argparse.Namespace) -> int:
    from . import simulate

    out = _check_output(args.output)
    kwargs: dict = {"noise_ratio": args.noise_ratio, "seed": args.seed}
    if args.frequency:
        freqs = args.frequency
        kwargs["frequency"] = freqs[0] if len(freqs) == 1 else freqs
    if args.phantom == "four-target":
        example = simulate.four_target(**kwargs)
    elif args.phantom == "liver":
        example = simulate.liver(**kwargs)
    else:
        if "frequency" in kwargs and not isinstance(kwargs["frequency"], float):
            raise MREInputError("the cylinder phantom takes a single --frequency.")
        example = simulate.cylinder(**kwargs)
    print(example.describe_text())
    _save(example, out)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from . import baselines

    out = _check_output(args.output, args.input)
    example = _load(args)
    if args.method == "ahi":
        if len(example.frequencies) > 1:
            raise MREInputError(
                f"{args.input}: has {len(example.frequencies)} frequencies; choose one with "
                "--frequency for AHI (or use mdev, which uses them all)."
            )
        result = baselines.ahi(example, smoothing=args.smoothing)
    elif args.method == "kmdev":
        return _baseline_kmdev(args, example, out)
    else:
        result = baselines.mdev(example, smoothing=args.smoothing)
    example = example.copy()
    example[result.name] = result
    _save(example, out)
    print(f"{result.name}: complex shear modulus, Pa")
    return 0


def _baseline_kmdev(args: argparse.Namespace, example: MREExample, out: Path) -> int:
    from .kmdev import kmdev

    # k-MDEV band-passes in k-space; Gaussian pre-smoothing is its only smoothing option
    if args.smoothing == "savgol":
        raise MREInputError("k-MDEV smooths with 'gaussian' or 'none', not 'savgol'.")
    maps = kmdev(example, smoothing=args.smoothing)
    example = example.copy()
    for name, da in maps.data_vars.items():
        example[name] = da
    _save(example, out)
    print(f"{', '.join(maps.data_vars)}: speed m/s, attenuation 1/m")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.print_config:
        print(config.to_json())
        return 0
    if args.output is None:
        raise MREInputError("give the result file with -o RESULT.nc (or --print-config).")
    out = _check_output(args.output, args.input)
    if not args.no_figure:
        _OUTPUTS.planned.append(str(out.with_suffix(".png")))
    if args.input is None:
        from . import simulate

        noise = DEMO_NOISE_RATIO if args.noise_ratio is None else args.noise_ratio
        snr = f"{-10 * math.log10(noise):.0f} dB SNR" if noise > 0 else "noise-free"
        print(f"no INPUT: fitting the built-in four-target phantom at 90 Hz (one slice, {snr}),"
              " with AHI beside it")
        example = simulate.four_target(frequency=args.frequency or 90.0)
        # the everyday default: the middle slice, which fits in minutes on 2 CPU cores
        if "z" in example.spatial_dims and not args.full_3d:
            example = MREExample(
                example.ds.isel(z=[example.ds.sizes["z"] // 2]), source="four-target phantom"
            )
    else:
        example = _load(args)
        noise = args.noise_ratio or 0.0
    if noise:
        example = example.add_gaussian_noise(noise, seed=config.seed or 0)
    config.check(example)  # before any work: one message for a bad combination
    from .recipe import fit

    if len(example.frequencies) > 1:
        from .multifreq import reference_frequency

        f_ref = reference_frequency(example.frequencies, config.reference_frequency)
        print(f"{len(example.frequencies)} frequencies "
              f"({', '.join(f'{f:g}' for f in example.frequencies)} Hz): one joint fit, "
              f"mu_pred at the reference frequency {f_ref:g} Hz (--frequency F fits one)")
    result = fit(example, config, progress=True)
    ran = json.loads(result.ds.attrs.get("mrepinn_settings_json", "{}"))
    if ran.get("converged_at"):
        print(f"converged at iteration {ran['converged_at']} of at most {config.iters} "
              f"(|G*| changed < {config.stop_tol:g} twice; --stop-tol 0 runs them all)")
    _save(result, out)
    if "mre" in result:
        from .metrics import evaluate, format_table, truth_for

        rows = {
            name: evaluate(result[name], truth_for(result[name], result["mre"]), result.mask)
            for name in ("mu_pred", "mu_ahi")
            if name in result
        }
        print(format_table(rows))
    if not args.no_figure:
        from .figures import save_result_figure

        png = save_result_figure(result, out.with_suffix(".png"))
        _OUTPUTS.wrote(png)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .metrics import evaluate, format_table, truth_for

    example = _load(args)
    if "mre" not in example:
        raise MREInputError(
            f"{args.input}: no ground truth 'mre' to compare with; evaluate needs a file "
            "with 'mre' (e.g. a simulated phantom) and a result such as 'mu_pred'."
        )
    names = args.variables or [
        n for n in ("mu_pred", "mu_ahi", "mu_mdev") if n in example
    ]
    if not names:
        raise MREInputError(
            f"{args.input}: no result to evaluate (looked for mu_pred, mu_ahi, mu_mdev); "
            "run `mrepinn fit` or `mrepinn baseline` first."
        )
    missing = [n for n in names if n not in example]
    if missing:
        raise MREInputError(f"{args.input}: no variable {', '.join(missing)}.")
    mask = example.mask  # the whole grid when there is no mre_mask
    truth = example["mre"]
    rows = {}
    for name in names:
        pred = example[name]
        rows[name] = evaluate(pred, truth_for(pred, truth), mask)
    print(format_table(rows))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .stats import roi_statistics, write_csv

    if Path(args.output).suffix.lower() != ".csv":
        raise MREInputError(f"{args.output}: the table is CSV; use a name ending in .csv.")
    example = _load(args)
    table = roi_statistics(example, args.roi, methods=args.methods)
    out = write_csv(table, args.output)
    _OUTPUTS.written.append(str(out))
    cols = ["method", "region_name", "readout", "unit", "n_valid", "median", "q25", "q75"]
    with_freq = table["frequency_hz"].notna().any()
    print(table[cols + (["frequency_hz"] if with_freq else [])]
          .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {out}")
    return 0
def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchInterrupted, run_batch

    config = _config(args) if "pinn" in args.method else None
    try:
        summary = run_batch(
            args.inputs, args.output, methods=args.method, config=config,
            workers=args.workers, scheduler=args.scheduler, frequency=args.frequency,
            spacing=None if args.spacing is None else [v * 1e-3 for v in args.spacing],
            components=args.components, retries=args.retries,
            retry_failed=args.retry_failed, progress=not args.quiet,
        )
    except BatchInterrupted as exc:
        print(f"mrepinn: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    by_exam = summary.groupby("id", sort=False)
    exams = by_exam["status"].agg(lambda s: (s == "done").all())
    failed = summary[summary["status"] != "done"]
    reused = int((by_exam["reused"].all() & exams).sum())
    print(f"{len(exams)} exam(s): {int(exams.sum())} done ({reused} from an earlier run), "
          f"{int((~exams).sum())} failed; summary: {Path(args.output) / 'summary.csv'}")
    for rec in failed.head(10).itertuples():
        print(f"  {rec.id} [{rec.method}] {rec.status}: {rec.error}")
    if len(failed) > 10:
        print(f"  ... and {len(failed) - 10} more (see the summary)")
    return 1 if len(failed) else 0
def cmd_import(args: argparse.Namespace) -> int:
    from .scanner import import_exam, summary_text

    out = _check_output(args.output, *args.paths)
    options: dict = {"unwrap": args.unwrap, "progress": True,
                     "mask_threshold": args.mask_threshold or None}
    if args.frequency:
        options["frequency"] = args.frequency[0] if len(args.frequency) == 1 else args.frequency
    if args.directions:
        options["directions"] = args.directions
    if args.spacing:
        if len(args.spacing) not in (1, 3) or any(v <= 0 for v in args.spacing):
            raise MREInputError(
                f"--spacing takes one voxel size or three (x y z), positive mm; got "
                f"{' '.join(f'{v:g}' for v in args.spacing)}."
            )
        options["spacing"] = [v * 1e-3 for v in args.spacing]  # mm -> m
    if args.phase_range:
        options["phase_range"] = tuple(args.phase_range)
    if args.smoothing:
        options["smoothing"] = args.smoothing
    if args.sensitivity:
        options["encoding_sensitivity"] = args.sensitivity * 1e6  # rad/µm -> rad/m
    if args.remove_divergence:
        options["divergence_removal"] = True
    if args.reverse_offsets:
        options["reverse_offsets"] = True
    options["workers"] = args.workers
    example = import_exam(args.paths, **options)
    print(summary_text(example))
    _save(example, out)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from . import benchmark

    return benchmark.main(args)


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrepinn",
        description="MR elastography inversion with physics-informed neural networks "
        "(MRE-PINN) and direct inversion (AHI/MDEV). Files are NetCDF (.nc); units are "
        "metres, Hz and Pa inside, mm and kPa in tables.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_simulate_parser(sub)
    _add_baseline_parser(sub)
    _add_fit_parser(sub)
    _add_evaluate_parser(sub)
    _add_stats_parser(sub)
    _add_batch_parser(sub)
    _add_import_parser(sub)
    _add_benchmark_parser(sub)
    return parser


def _add_simulate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a phantom with ground truth")
    p.add_argument("phantom", choices=["four-target", "liver", "cylinder"])
    p.add_argument("-o", "--output", required=True, help="output .nc file")
    p.add_argument(
        "--frequency", type=_finite_float, nargs="+", help="vibration frequency(ies) in Hz"
    )
    p.add_argument("--noise-ratio", type=_finite_float, default=0.0,
                   help="noise power / signal power (1e-3 = 30 dB SNR)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)


def _add_baseline_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="direct inversion: AHI, MDEV or k-MDEV")
    p.add_argument("method", choices=["ahi", "mdev", "kmdev"])
    p.add_argument("input", help="input .nc (or NIfTI folder / .mat) file")
    p.add_argument("-o", "--output", required=True, help="output .nc file")
    _add_reading_flags(p, "frequency in Hz: selects one of a multi-frequency file (AHI; "
                       "k-MDEV then uses only this one), or supplies a missing one")
    p.add_argument("--smoothing", choices=["none", "gaussian", "savgol"], default="gaussian")
    p.set_defaults(func=cmd_baseline)


def _add_fit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="train MRE-PINN (default: the built-in phantom)")
    p.add_argument("input", nargs="?", help="input .nc file (default: four-target phantom)")
    p.add_argument("-o", "--output", help="output .nc file (+ .png figure)")
    _add_reading_flags(p, "frequency in Hz to fit: selects one of a multi-frequency file, "
                       "or supplies a missing one")
    p.add_argument("--noise-ratio", type=_finite_float, default=None,
                   help="add complex Gaussian noise (noise/signal power) before fitting; "
                   f"the built-in demo uses {DEMO_NOISE_RATIO:g} (30 dB) unless given")
    p.add_argument("--full-3d", action="store_true",
                   help="built-in phantom: fit the whole 3D box, not the middle slice")
    p.add_argument("--no-figure", action="store_true", help="do not write the PNG figure")
    p.add_argument("--print-config", action="store_true",
                   help="print the training options as JSON (for --config) and exit")
    _add_config_flags(p)
    p.set_defaults(func=cmd_fit)


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics of results against the ground truth 'mre'")
    p.add_argument("input", help="result .nc file")
    _add_reading_flags(p, "frequency in Hz (selects one of a multi-frequency file)")
    p.add_argument("--variables", nargs="+", help="result variables (default: all found)")
    p.set_defaults(func=cmd_evaluate)


def _add_stats_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="ROI statistics of the readouts (median, IQR, mean, sd)")
    p.add_argument("input", help="result .nc file (or NIfTI folder / .mat)")
    _add_reading_flags(p, "frequency in Hz (selects one of a multi-frequency file)")
    p.add_argument("--roi", help="label map (.nii, .nii.gz or .nc; default: the file's mask)")
    p.add_argument("--methods", nargs="+", choices=["pinn", "ahi", "mdev", "kmdev", "truth"],
                   help="whose readouts (default: every result in the file, and the truth)")
    p.add_argument("-o", "--output", required=True, help="output .csv file")
    p.set_defaults(func=cmd_stats)


def _add_batch_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="invert many exams on a Dask cluster (local by default)",
        description="Run METHODs on every exam of INPUTS (files, folders, glob patterns or a "
        "CSV manifest with columns id, path, frequency, spacing_mm, components) and write "
        "RESULTS_DIR/<id>.nc and RESULTS_DIR/summary.csv. A rerun skips what is done for "
        "the same inputs and settings. Exit status 1 when some exams failed.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="file, folder, glob pattern (quoted) or CSV manifest")
    p.add_argument("-o", "--output", required=True, metavar="RESULTS_DIR",
                   help="folder of the results (created)")
    p.add_argument("--method", nargs="+", choices=["pinn", "ahi", "mdev"], default=["pinn"],
                   help="methods to run on every exam (default: pinn)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="worker processes of the local Dask cluster, one thread each "
                       "(default: the CPU cores)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="use an existing Dask cluster, e.g. tcp://host:8786")
    p.add_argument("--retries", type=int, default=2,
                   help="times a task that raised an unexpected error is rerun (default 2)")
    p.add_argument("--retry-failed", action="store_true",
                   help="also redo exams that failed with bad input or a diverged fit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    _add_reading_flags(p, "frequency in Hz for every exam (a manifest's column wins): "
                       "selects one of a multi-frequency file, or supplies a missing one")
    _add_config_flags(p)
    p.set_defaults(func=cmd_batch)


def _add_import_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="scanner phase images (DICOM, dcm2niix NIfTI) to a wave field (.nc)",
        description="Read MRE phase images (DICOM folders, or raw phase NIfTI as dcm2niix "
        "writes them), unwrap, take the first temporal harmonic and write an example. Each "
        "PATH holds one series, taken in the order given (frequency by frequency, direction "
        "by direction); the frequency and the encoding directions are never guessed.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM folder/files or NIfTI files")
    p.add_argument("-o", "--output", required=True, help="output .nc file")
    p.add_argument("--frequency", type=float, nargs="+", metavar="HZ",
                   help="vibration frequency(ies) in Hz, in series order")
    p.add_argument("--directions", nargs="+", choices=["x", "y", "z"],
                   help="motion-encoding direction of each series of a frequency (x: image "
                   "columns, y: rows, z: slice normal)")
    p.add_argument("--unwrap", choices=["laplacian", "skimage", "none"], default="laplacian",
                   help="phase unwrapping (default laplacian)")
    p.add_argument("--spacing", type=float, nargs="+", metavar="MM",
                   help="voxel size in mm (one value, or x y z); overrides the files")
    p.add_argument("--phase-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="rescaled values that map to -pi and +pi (default: full stored range)")
    p.add_argument("--mask-threshold", type=float, default=0.1,
                   help="mask: magnitude above this fraction of its robust max (0: no mask)")
    p.add_argument("--smoothing", type=float, metavar="SIGMA",
                   help="complex Gaussian smoothing, sigma in voxels (in-plane)")
    p.add_argument("--sensitivity", type=float, metavar="RAD_PER_UM",
                   help="motion-encoding sensitivity: the wave becomes displacement (m)")
    p.add_argument("--remove-divergence", action="store_true",
                   help="remove the compressional wave (needs x y z directions, 3-D)")
    p.add_argument("--reverse-offsets", action="store_true",
                   help="the phase offsets run backwards in time (conjugates the wave; use when "
                   "every inversion gives a negative loss modulus)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="processes reading DICOM files (default 1; more pays off for "
                   "thousands of files on idle cores)")
    p.set_defaults(func=cmd_import)


def _add_benchmark_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="time the training paths, the baselines and the "
                       "thread policy under load")
    p.add_argument("--quick", action="store_true", help="fewer repeats and iterations")
    p.add_argument("--device", help="cpu or cuda (default: cpu, and cuda when available)")
    p.add_argument("--skip-accuracy", action="store_true",
                   help="skip the time-to-accuracy runs")
    p.add_argument("--skip-contention", action="store_true",
                   help="skip the thread-policy runs (a short fit beside a busy core and "
                   "beside another fit)")
    p.add_argument("--contention-only", action="store_true",
                   help="only the thread-policy runs")
    p.add_argument("--gui-overhead", action="store_true",
                   help="moved to benchmarks/gui_overhead.py (needs Qt); says how to run it")
    p.add_argument("-o", "--output", help="write the results as JSON here")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch, in this process and in the thread-policy "
                   "fits (default 0: the default policy, one thread on machines with two "
                   "cores or fewer)")
    p.set_defaults(func=cmd_benchmark)


def _version() -> str:
    from . import __version__

    return f"mrepinn {__version__}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # a plausibility warning is for the user, one line like the errors; others stay as is
    if issubclass(category, MREPlausibilityWarning):
        print(f"mrepinn: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mrepinn`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "smoothing", None) == "none":
        args.smoothing = None
    _OUTPUTS.reset()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except MREInputError as exc:
            done = f" ({_OUTPUTS.summary()}.)" if _OUTPUTS.written else ""
            print(f"mrepinn: error: {exc}{done}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as exc:
            # a file-system failure outside the library's own checks: still one line
            print(f"mrepinn: error: {exc} ({_OUTPUTS.summary()}.)", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(f"mrepinn: stopped by the user; {_OUTPUTS.summary()}.", file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
