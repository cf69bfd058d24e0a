"""Re-parameterized RepVGG: CPU speed of the deploy form against the training form.

Both forms of the same network (seed 001's RepVGG-GCT / RepVGG-SE at the default RepVGG-A0
layout, 6 classes) run on the same input batch in the same process, under
``torch.inference_mode()``, in the memory format the plugin's predictor uses
(``channels_last``), after warm-up runs; each repeat times both forms back to back
(interleaved, so drifting machine load hits both) and the median is reported. Parameter
counts are printed next to the paper's (Table 4 and Table 7), and the largest output
difference between the forms shows they compute the same function.

    python benchmarks/bench_reparam.py [--batch 32] [--size 256] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_her2.models import count_parameters, get_model, reparameterize_model  # noqa: E402
from napari_her2.models.repvgg import RepVGG  # noqa: E402

#: seed 001: (train-form, deploy-form) parameters in millions; SE train form not reported
PAPER_PARAMS_M = {"repvgg-gct": (7.849, 7.049), "repvgg-se": (None, 7.316)}
PAPER_ECM_M = (7.836, 7.036)  # Table 7, ECM without attention


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", nargs="+", default=["repvgg-gct", "repvgg-se"])
    p.add_argument("--batch", type=int, default=32, help="tiles per forward pass")
    p.add_argument("--size", type=int, default=256, help="tile side in pixels")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last")
    return p.parse_args(argv)


@torch.no_grad()
def calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Give BN layers data statistics (as a trained model has) so outputs are realistic."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    model(x)
    model.eval()


def time_forms(forms: dict[str, torch.nn.Module], x: torch.Tensor, warmup: int, repeats: int):
    """Median seconds per forward pass of each form, interleaved repeats."""
    times: dict[str, list[float]] = {name: [] for name in forms}
    with torch.inference_mode():
        for _ in range(warmup):
            for model in forms.values():
                model(x)
        for _ in range(repeats):
            for name, model in forms.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_name() -> str:
    """CPU model from /proc/cpuinfo where there is one."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fmt_m(n: float | None) -> str:
    return "   n/a" if n is None else f"{n:6.3f}"


def bench(name: str, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    train = get_model(name)
    calibrate_bn(train, torch.randn(4, 3, args.size, args.size))
    deploy = reparameterize_model(train)
    x = torch.randn(args.batch, 3, args.size, args.size)
    if not args.contiguous:
        train = train.to(memory_format=torch.channels_last)
        deploy = deploy.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref, out = train(x), deploy(x)
    diff = float((ref - out).abs().max())
    med = time_forms({"train": train, "deploy": deploy}, x, args.warmup, args.repeats)
    n_train, n_deploy = count_parameters(train) / 1e6, count_parameters(deploy) / 1e6
    paper = PAPER_PARAMS_M[name]
    print(f"\n{name}  (batch {args.batch} x 3 x {args.size} x {args.size})")
    print(
        f"  params (M)   train {n_train:6.3f}  deploy {n_deploy:6.3f}   "
        f"paper: train {fmt_m(paper[0])}  deploy {fmt_m(paper[1])}"
    )
    print(
        f"  time/batch   train {med['train'] * 1e3:8.1f} ms  deploy {med['deploy'] * 1e3:8.1f} ms"
    )
    print(
        f"  time/tile    train {med['train'] * 1e3 / args.batch:8.2f} ms  "
        f"deploy {med['deploy'] * 1e3 / args.batch:8.2f} ms"
    )
    print(f"  speed ratio  deploy vs train: {med['train'] / med['deploy']:.2f}x   (target >= 1.5x)")
    print(f"  max |logit difference| {diff:.2e}  (max |logit| {float(ref.abs().max()):.2f})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("bench_reparam: RepVGG training form vs re-parameterized deploy form, CPU")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{'NCHW' if args.contiguous else 'channels_last'}; median of {args.repeats} "
        f"after {args.warmup} warm-up runs, torch.inference_mode"
    )
    ecm = RepVGG(num_classes=6, attention="none")
    print(
        f"ECM without attention (paper Table 7: {PAPER_ECM_M[0]} M -> {PAPER_ECM_M[1]} M): "
        f"{count_parameters(ecm) / 1e6:.3f} M -> "
        f"{count_parameters(reparameterize_model(ecm)) / 1e6:.3f} M"
    )
    for name in args.arch:
        bench(name, args)

    return 0


if __name__ == "__main__":
    sys.exit(main())
