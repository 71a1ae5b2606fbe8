"""The ``mrepinn`` command: simulate phantoms, run baselines, fit the PINN, evaluate, benchmark.

Every subcommand reads and writes the project's NetCDF files (see ``CONTRIBUTING.md``).
Bad input ends with one line ``mrepinn: error: ...`` and exit status 2; Ctrl-C stops long
work with exit status 130 and leaves existing files untouched.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .data import MREExample, MREInputError, MREPlausibilityWarning

__all__ = ["main"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------------- helpers
def _load(path: str, frequency: float | None = None) -> MREExample:
    from .io import load_example

    example = load_example(path)
    if frequency is not None:
        example = example.select_frequency(frequency)
    return example


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


def _parse_weights(text: str) -> list[float]:
    try:
        weights = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"loss weights must be numbers like '1,0,1,0', got {text!r}"
        ) from None
    if len(weights) not in (3, 4) or any(w < 0 for w in weights):
        raise argparse.ArgumentTypeError(
            "give 3 or 4 non-negative loss weights: wave, elasticity, PDE[, anatomy]"
        )
    return weights


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


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
    example.save(out)
    print(example.describe_text())
    _OUTPUTS.wrote(out)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from . import baselines

    out = _check_output(args.output, args.input)
    example = _load(args.input)
    if args.method == "ahi":
        if len(example.frequencies) > 1 and args.frequency is None:
            raise MREInputError(
                f"{args.input}: has {len(example.frequencies)} frequencies; choose one with "
                "--frequency for AHI (or use mdev, which uses them all)."
            )
        if args.frequency is not None:
            example = example.select_frequency(args.frequency)
        result = baselines.ahi(example, smoothing=args.smoothing)
    else:
        result = baselines.mdev(example, smoothing=args.smoothing)
    example = example.copy()
    example[result.name] = result
    example.save(out)
    _OUTPUTS.written.append(str(out))
    print(f"wrote {out} with {result.name} (complex shear modulus, Pa)")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .figures import save_result_figure
    from .training import fit

    out = _check_output(args.output, args.input)
    if not args.no_figure:
        _OUTPUTS.planned.append(str(out.with_suffix(".png")))
    _set_threads(args.threads)
    if args.input is None:
        from . import simulate

        print("no INPUT: fitting the built-in four-target phantom at 90 Hz (one slice)")
        example = simulate.four_target(frequency=args.frequency or 90.0)
        # the everyday default: the middle slice, which fits in minutes on 2 CPU cores
        if "z" in example.spatial_dims and not args.full_3d:
            example = MREExample(
                example.ds.isel(z=[example.ds.sizes["z"] // 2]), source="four-target phantom"
            )
    else:
        example = _load(args.input, args.frequency)
    if args.noise_ratio:
        example = example.add_gaussian_noise(args.noise_ratio, seed=args.seed)
    options: dict = {}
    if args.loss_weights is not None:
        options["loss_weights"] = args.loss_weights
    if args.lr is not None:
        options["lr"] = args.lr
    result = fit(
        example,
        iters=args.iters,
        device=args.device,
        pde=args.pde,
        n_points=args.n_points,
        seed=args.seed,
        progress=True,
        **options,
    )
    result.save(out)
    _OUTPUTS.wrote(out)
    if "mre" in result:
        from .metrics import evaluate, format_table

        rows = {
            name: evaluate(result[name], result["mre"], result.mask)
            for name in ("mu_pred", "mu_ahi")
            if name in result
        }
        print(format_table(rows))
    if not args.no_figure:
        png = save_result_figure(result, out.with_suffix(".png"))
        _OUTPUTS.wrote(png)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .metrics import evaluate, format_table

    example = _load(args.input)
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
        true = truth
        if "frequency" in true.dims and "frequency" not in pred.dims:
            true = truth.sel(frequency=float(pred.attrs.get("frequency", example.frequencies[0])))
        rows[name] = evaluate(pred, true, mask)
    print(format_table(rows))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from . import benchmark

    _set_threads(args.threads)
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

    p = sub.add_parser("simulate", help="write a phantom with ground truth")
    p.add_argument("phantom", choices=["four-target", "liver", "cylinder"])
    p.add_argument("-o", "--output", required=True, help="output .nc file")
    p.add_argument(
        "--frequency", type=float, nargs="+", help="vibration frequency(ies) in Hz"
    )
    p.add_argument("--noise-ratio", type=float, default=0.0,
                   help="noise power / signal power (1e-3 = 30 dB SNR)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("baseline", help="direct inversion: AHI or MDEV")
    p.add_argument("method", choices=["ahi", "mdev"])
    p.add_argument("input", help="input .nc (or NIfTI folder / .mat) file")
    p.add_argument("-o", "--output", required=True, help="output .nc file")
    p.add_argument("--frequency", type=float, help="frequency in Hz (AHI, multi-frequency input)")
    p.add_argument("--smoothing", choices=["none", "gaussian", "savgol"], default="gaussian")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("fit", help="train MRE-PINN (default: the built-in phantom)")
    p.add_argument("input", nargs="?", help="input .nc file (default: four-target phantom)")
    p.add_argument("-o", "--output", required=True, help="output .nc file (+ .png figure)")
    p.add_argument("--iters", type=_positive_int, help="training iterations (default: recipe)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--pde", choices=["helmholtz", "hetero", "general"], default="hetero")
    p.add_argument("--n-points", type=_positive_int, default=1024,
                   help="collocation points per iteration")
    p.add_argument("--loss-weights", type=_parse_weights,
                   help="wave,elasticity,PDE[,anatomy] weights (dimensionless losses)")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--frequency", type=float, help="frequency in Hz to fit")
    p.add_argument("--noise-ratio", type=float, default=0.0, help="add noise before fitting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full-3d", action="store_true",
                   help="built-in phantom: fit the whole 3D box, not the middle slice")
    p.add_argument("--no-figure", action="store_true", help="do not write the PNG figure")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="CPU threads for torch (default 1: on a 2-core machine one thread is "
                   "faster for this network and leaves a core for everything else)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="metrics of results against the ground truth 'mre'")
    p.add_argument("input", help="result .nc file")
    p.add_argument("--variables", nargs="+", help="result variables (default: all found)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="time the training paths and the baselines")
    p.add_argument("--quick", action="store_true", help="fewer repeats and iterations")
    p.add_argument("--device", help="cpu or cuda (default: cpu, and cuda when available)")
    p.add_argument("--skip-accuracy", action="store_true",
                   help="only time iterations, skip the time-to-accuracy runs")
    p.add_argument("--gui-overhead", action="store_true",
                   help="also time the napari dock's Qt training worker against the plain loop")
    p.add_argument("-o", "--output", help="write the results as JSON here")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="CPU threads for torch (default 1: on a 2-core machine one thread is "
                   "faster for this network and leaves a core for everything else)")
    p.set_defaults(func=cmd_benchmark)
    return parser


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
