"""Print OPQ training time, encoding time and peak memory on random vectors.

Usage: python benchmarks/bench_opq.py [--sizes 10000 50000] [--dim 768] [--subquantizers 4]
    [--bits 8] [--threads 0]

Each size runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its own. CPU
seconds are printed next to wall seconds because wall time on a shared machine depends on load. The
figures use `clairo_bench.features.quantize.train_opq` with the pipeline's default iterations
(50 OPQ, 25 k-means), the settings a 768-d fused vector gets by default. The data is standard
normal float32, which has no structure for OPQ to find, so this measures cost, not code quality.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def measure(size: int, dim: int, subquantizers: int, bits: int, threads: int) -> dict:
    import faiss
    import psutil

    from clairo_bench.features.quantize import train_opq

    if threads > 0:
        faiss.omp_set_num_threads(threads)
    vectors = np.random.default_rng(0).standard_normal((size, dim), dtype=np.float32)
    rss_before_mib = psutil.Process().memory_info().rss / 2**20

    started = time.perf_counter()
    cpu_started = time.process_time()
    quantizer = train_opq(vectors, subquantizers, bits)
    train_s = time.perf_counter() - started
    train_cpu_s = time.process_time() - cpu_started

    started = time.perf_counter()
    quantizer.encode(vectors)
    encode_s = time.perf_counter() - started

    # On Linux ru_maxrss is in KiB.
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "size": size,
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
        "encode_s": encode_s,
        "rss_before_mib": rss_before_mib,
        "peak_rss_mib": peak_mib,
        "faiss_threads": faiss.omp_get_max_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000],
                        help="training set sizes (items)")
    parser.add_argument("--dim", type=int, default=768, help="vector dimension")
    parser.add_argument("--subquantizers", type=int, default=4, help="OPQ sub-quantizers M")
    parser.add_argument("--bits", type=int, default=8, help="bits per sub-quantizer")
    parser.add_argument("--threads", type=int, default=0,
                        help="faiss OpenMP threads; 0 keeps faiss's default")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.one is not None:
        result = measure(arguments.one, arguments.dim, arguments.subquantizers, arguments.bits,
                         arguments.threads)
        print(json.dumps(result))
        return

    print(f"OPQ{arguments.subquantizers} x {arguments.bits} bits on {arguments.dim}-d random "
          "float32 vectors")
    print(f"{'items':>8} {'train s':>9} {'train CPU s':>12} {'encode s':>9} "
          f"{'RSS before MiB':>15} {'peak RSS MiB':>13} {'threads':>8}")
    for size in arguments.sizes:
        command = [
            sys.executable, __file__, "--one", str(size), "--dim", str(arguments.dim),
            "--subquantizers", str(arguments.subquantizers), "--bits", str(arguments.bits),
            "--threads", str(arguments.threads),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        print(f"{result['size']:>8} {result['train_s']:>9.1f} {result['train_cpu_s']:>12.1f} "
              f"{result['encode_s']:>9.2f} {result['rss_before_mib']:>15.0f} "
              f"{result['peak_rss_mib']:>13.0f} {result['faiss_threads']:>8}")


if __name__ == "__main__":
    main()
