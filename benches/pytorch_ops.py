"""The single operations of `benches/kernels.rs`, timed in PyTorch the same way, on the CPU or
on a CUDA GPU (`--device cuda`, synchronised before the clock stops).

Each case is `op:shape...` as the Rust bench prints it (see `--cases`); each measurement is the
forward pass and the backward pass of `L = sum(y * r)` with every input requiring a gradient,
the median of `--runs` runs after `--warmup`. Prints one JSON object per line:

    {"case": "...", "median_s": ..., "min_s": ..., "max_s": ..., "runs": 5}

Usage: python3 benches/pytorch_ops.py --cases CASE [CASE ...] [--runs 5] [--warmup 2] [--threads N]
                                      [--device cpu|cuda]
"""

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F


def build(case, device):
    """Inputs and the function of one case, e.g. `conv2d:128x64x14x14:128:4:2:1`, on `device`."""
    torch.set_default_device(device)
    op, *fields = case.split(":")
    dims = [int(v) for v in fields[0].split("x")]
    if op in ("conv2d", "conv_transpose2d"):
        out_channels, kernel, stride, padding = (int(v) for v in fields[1:5])
        x = torch.randn(*dims, requires_grad=True)
        if op == "conv2d":
            w = torch.randn(out_channels, dims[1], kernel, kernel, requires_grad=True)
            f = lambda: F.conv2d(x, w, None, stride, padding)
        else:
            w = torch.randn(dims[1], out_channels, kernel, kernel, requires_grad=True)
            f = lambda: F.conv_transpose2d(x, w, None, stride, padding)
        return f
    if op == "batch_norm":
        activation = fields[1]
        x = torch.randn(*dims, requires_grad=True)
        gamma = torch.ones(dims[1], requires_grad=True)
        beta = torch.zeros(dims[1], requires_grad=True)
        act = {"identity": lambda v: v, "relu": F.relu,
               "leaky_relu": lambda v: F.leaky_relu(v, 0.2), "silu": F.silu}[activation]
        return lambda: act(F.batch_norm(x, None, None, gamma, beta, True, 0.1, 1e-5))
    if op == "group_norm":
        groups, activation = int(fields[1]), fields[2]
        x = torch.randn(*dims, requires_grad=True)
        gamma = torch.ones(dims[1], requires_grad=True)
        beta = torch.zeros(dims[1], requires_grad=True)
        act = {"identity": lambda v: v, "silu": F.silu}[activation]
        return lambda: act(F.group_norm(x, groups, gamma, beta, 1e-5))
    if op == "linear":
        out_features = int(fields[1])
        x = torch.randn(*dims, requires_grad=True)
        w = torch.randn(out_features, dims[1], requires_grad=True)
        return lambda: F.linear(x, w)
    raise SystemExit(f"unknown case {case!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    for case in args.cases:
        f = build(case, args.device)
        r = torch.randn_like(f())
        times = []
        for run in range(args.warmup + args.runs):
            start = time.perf_counter()
            (f() * r).sum().backward()
            sync()
            if run >= args.warmup:
                times.append(time.perf_counter() - start)
        print(json.dumps({"case": case, "median_s": statistics.median(times), "min_s": min(times),
                          "max_s": max(times), "runs": len(times)}), flush=True)


if __name__ == "__main__":
    main()
