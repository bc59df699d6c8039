"""The cost of keeping ranks in lockstep: per-step control overhead at K = 1, 10, 100.

    python benchmarks/dist_overhead.py            # launches itself under torchrun, 2 ranks
    python benchmarks/dist_overhead.py --quick    # a few seconds, for CI

Two CPU ranks (gloo) train the same small DDP model: a bare DDP loop, and the
optitui trainer exchanging commands and losses every K steps. Variants are
interleaved and repeated; the table gives each variant's median time per step
and what the trainer adds over the bare DDP loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def launch(argv: list[str]) -> int:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        __file__,
        *argv,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.call(cmd, env=env)


def main() -> None:
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from optitui.store.layout import create_run_dir
    from optitui.trainer.core import dist as odist
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps, rounds = (200, 1) if args.quick else (1500, 5)
    info = odist.init_from_env(torch.device("cpu"))
    assert info is not None
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(info.rank)
    batches = [
        (torch.randn(64, 64, generator=g), torch.randn(64, 1, generator=g)) for _ in range(32)
    ]

    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 1))

    def bare() -> float:
        net = DDP(model())
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(steps):
            x, y = batches[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        dist.barrier()
        return (time.perf_counter() - t0) / steps

    root = Path(tempfile.mkdtemp()) if info.leader else None

    def trained(k: int, i: int) -> float:
        m = model()
        job = Job(
            model=m,
            optimizer=torch.optim.SGD(m.parameters(), lr=0.01),
            train_data=batches,
            loss_fn=nn.functional.mse_loss,
            sync_every=k,
            max_steps=steps,
        )
        made = create_run_dir(root, "b", root / f"k{k}-{i}") if root is not None else None
        paths = odist.broadcast_object(made, torch.device("cpu"))
        trainer = Trainer(job, torch.device("cpu"), paths, dist_info=info)
        dist.barrier()
        t0 = time.perf_counter()
        trainer.run()
        dist.barrier()
        return (time.perf_counter() - t0) / steps

    ks = (1, 10, 100)
    times: dict[str, list[float]] = {"bare DDP": [], **{f"optitui K={k}": [] for k in ks}}
    for i in range(rounds):
        times["bare DDP"].append(bare())
        for k in ks:
            times[f"optitui K={k}"].append(trained(k, i))
    if info.leader:
        base = statistics.median(times["bare DDP"])
        print(f"\n2 ranks, gloo, CPU, {steps} steps x {rounds} rounds, interleaved")
        print(f"{'variant':14} {'us/step':>9} {'added us':>9} {'ratio':>7}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:14} {med * 1e6:9.1f} {(med - base) * 1e6:9.1f} {med / base:7.3f}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if "LOCAL_RANK" in os.environ:
        main()
    else:
        raise SystemExit(launch(sys.argv[1:]))
