"""Generator inference speed: images per second of ``Gs.run`` on this CPU.

Usage: ``nice -n 10 python bench/bench_generator.py [--repeats=5] [--batch=8] [--impls=ref,custom] [--quick]``

Networks: a StyleGAN2 config-f layout at 256 px (random weights from
``Network.from_config('stylegan2', kind='G', resolution=256)``), a StyleGAN v1 layout at 256 px
(``from_config('stylegan', ...)``, NVIDIA's v1 defaults), and every tiny fixture pickle in
``tests/fixtures/`` (``--quick``: fixtures only). Each is timed with
``Gs.run(z, None, randomize_noise=False, minibatch_size=batch)`` on ``batch`` latents (truncation at
the network's default).

Ops implementations: one copy of each network per impl, built and traced with ``STYLEGAN_TL_OPS=<impl>``
(the ops resolve their implementation when traced, so each copy keeps its own). The copies are then
timed alternately, ``repeats`` rounds, so that a change of machine load hits every impl alike. v1
networks do not use the custom ops (their resampling is plain TF): their ratio shows the noise level.
Prints the load average and one markdown table (median seconds per batch, images/s, ref/custom).
"""

import os
import pathlib
import sys
import time

import numpy as np
from absl import flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from superres_tf import conventions  # noqa: E402

FLAGS = flags.FLAGS
FIXTURES = ROOT / "tests" / "fixtures"
ENV = "STYLEGAN_TL_OPS"


def _factories(quick):
    """(label, factory) pairs; each factory builds one generator ``Network``."""
    from stylegan_tl import load_network_pkl
    from stylegan_tl.network import Network

    nets = []
    if not quick:
        nets += [(f"{fam} {layout} 256 px (from_config)", lambda fam=fam: Network.from_config(fam, kind="G", resolution=256))
                 for fam, layout in (("stylegan2", "config-f"), ("stylegan", "v1"))]
    for pkl in sorted(FIXTURES.glob("*/network.pkl")):
        nets.append((f"fixture {pkl.parent.name}", lambda pkl=pkl: load_network_pkl(str(pkl))[2]))
    return nets


def _traced_runner(factory, impl, batch):
    """Build a network and trace its ``run`` with ops impl ``impl``; returns a no-argument runner."""
    old = os.environ.get(ENV)
    os.environ[ENV] = impl
    try:
        Gs = factory()
        z = np.random.RandomState(0).randn(batch, Gs.input_shape[1]).astype(np.float32)
        run = lambda: Gs.run(z, None, randomize_noise=False, minibatch_size=batch)
        run()  # traces: the ops pick their implementation now
        return run
    finally:
        if old is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = old


def _time_alternately(runners, repeats):
    """Median seconds per call of each runner, timed round-robin ``repeats`` times."""
    times = {impl: [] for impl in runners}
    for _ in range(repeats):
        for impl, run in runners.items():
            start = time.perf_counter()
            run()
            times[impl].append(time.perf_counter() - start)
    return {impl: float(np.median(t)) for impl, t in times.items()}


def define_flags():
    """Flags of the benchmark script."""
    flags.DEFINE_integer("repeats", 5, "Alternating timing rounds (the median counts).")
    flags.DEFINE_integer("batch", 8, "Latents per Gs.run call.")
    flags.DEFINE_list("impls", ["ref", "custom"], "Ops implementations to compare.")
    flags.DEFINE_bool("quick", False, "Fixtures only (no 256 px networks).")


def main():
    """The table's lines (progress on stderr)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from stylegan_tl.errors import StyleGANTLError

    impls, batch = FLAGS.impls, FLAGS.batch
    rows = []
    for label, factory in _factories(FLAGS.quick):
        print(f"{label} ...", file=sys.stderr, flush=True)
        runners, failed = {}, {}
        for impl in impls:
            try:
                runners[impl] = _traced_runner(factory, impl, batch)
            except StyleGANTLError as e:  # e.g. the custom ops do not build here
                failed[impl] = str(e).splitlines()[0]
        rows.append((label, _time_alternately(runners, FLAGS.repeats), failed))
    yield (f"batch {batch}, median of {FLAGS.repeats} alternating rounds; "
           f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    yield "| network | " + " | ".join(f"{i} s/batch | {i} img/s" for i in impls) + " | ref / custom time |"
    yield "|---|" + "---|---|" * len(impls) + "---|"
    for label, seconds, failed in rows:
        cells = []
        for impl in impls:
            s = seconds.get(impl)
            cells += [f"failed: {failed[impl]}", "-"] if s is None else [f"{s:.3f}", f"{batch / s:.1f}"]
        ratio = f"{seconds['ref'] / seconds['custom']:.2f}" if {"ref", "custom"} <= set(seconds) else "-"
        yield f"| {label} | " + " | ".join(cells) + f" | {ratio} |"


if __name__ == "__main__":
    define_flags()
    conventions.run(main)
