"""Generator inference speed: images per second of ``Gs.run`` on this CPU.

Usage: ``nice -n 10 python bench/bench_generator.py [--repeats 3] [--batch 8] [--impls ref,custom] [--quick]``

Networks: a StyleGAN2 config-f layout at 256 px (random weights from
``Network.from_config('stylegan2', kind='G', resolution=256)``), a StyleGAN v1 layout at 256 px
(``from_config('stylegan', ...)``, NVIDIA's v1 defaults), and every tiny fixture pickle in
``tests/fixtures/``. Each is timed with ``Gs.run(z, None, randomize_noise=False, minibatch_size=batch)``
on ``batch`` latents (truncation at the network's default), once per ops implementation: each impl runs
in its own subprocess with ``STYLEGAN_TL_OPS=<impl>`` so that nothing traced for one impl is reused
by the other. v1 networks do not use the custom ops (their resampling is plain TF), so their two
rows differ only by noise. Prints one markdown table (median seconds per batch, images/s, custom/ref).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FULL_SIZE = [("stylegan2 config-f 256 (from_config)", "stylegan2"),
             ("stylegan v1 256 (from_config)", "stylegan")]


def _networks(quick):
    """(label, factory) pairs; factories build the generator inside the worker process."""
    from stylegan_tl import load_network_pkl
    from stylegan_tl.network import Network

    nets = []
    if not quick:
        nets += [(label, lambda fam=fam: Network.from_config(fam, kind="G", resolution=256))
                 for label, fam in FULL_SIZE]
    for pkl in sorted(FIXTURES.glob("*/network.pkl")):
        nets.append((f"fixture {pkl.parent.name}", lambda pkl=pkl: load_network_pkl(str(pkl))[2]))
    return nets


def _time_network(Gs, batch, repeats):
    """Median seconds of one ``Gs.run`` on ``batch`` latents (after one warm-up call that traces)."""
    z = np.random.RandomState(0).randn(batch, Gs.input_shape[1]).astype(np.float32)
    run = lambda: Gs.run(z, None, randomize_noise=False, minibatch_size=batch)
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def worker(impl, batch, repeats, quick):
    """Time every network with the ops implementation already chosen by the environment; JSON lines out."""
    sys.path.insert(0, str(ROOT))
    from stylegan_tl.ops import impl as ops_impl

    resolved = ops_impl.resolve_impl("auto")
    for label, factory in _networks(quick):
        seconds = _time_network(factory(), batch, repeats)
        print(json.dumps(dict(net=label, impl=impl, resolved=resolved, seconds=seconds)), flush=True)


def _run_worker(impl, args):
    env = dict(os.environ, STYLEGAN_TL_OPS=impl, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, __file__, "--worker", impl, "--batch", str(args.batch), "--repeats", str(args.repeats)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        print(f"impl {impl}: worker failed: {tail[0]}", file=sys.stderr)
        return []
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--impls", default="ref,custom", help="comma-separated ops implementations")
    parser.add_argument("--quick", action="store_true", help="fixtures only (no 256 px networks)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch, args.repeats, args.quick)
        return
    rows = {}
    for impl in args.impls.split(","):
        print(f"timing impl={impl} ...", file=sys.stderr, flush=True)
        for r in _run_worker(impl, args):
            rows.setdefault(r["net"], {})[impl] = r
    impls = args.impls.split(",")
    print(f"batch {args.batch}, median of {args.repeats}, seconds per batch / images per second\n")
    print("| network | " + " | ".join(f"{i} s/batch | {i} img/s" for i in impls) + " | custom / ref speed-up |")
    print("|---|" + "---|---|" * len(impls) + "---|")
    for net, by_impl in rows.items():
        cells = []
        for impl in impls:
            r = by_impl.get(impl)
            note = "" if r is None or r["resolved"] == impl else f" (ran {r['resolved']})"
            cells += ["-", "-"] if r is None else [f"{r['seconds']:.3f}{note}", f"{args.batch / r['seconds']:.1f}"]
        ratio = "-"
        if {"ref", "custom"} <= set(by_impl):
            ratio = f"{by_impl['ref']['seconds'] / by_impl['custom']['seconds']:.2f}x"
        print(f"| {net} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
