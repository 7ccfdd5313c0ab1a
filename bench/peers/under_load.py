"""Latency with one core kept busy, against the same run on a quiet machine: QARep (bench, --busy-core) and
OpenVINO (in this process, with a pinned busy-loop process of its own), interleaved in rounds so that load
from elsewhere hits every row alike. Driven by `bench/compare-peers --under-load` (docs/performance.md, "Under
load"). With --baseline-bench, a second bench build (say main's) is timed in the same rounds, for before/after.

Acceptance figures printed at the end, per batch: QARep 2 threads / 1 thread under load, and QARep/OpenVINO
at 2 threads under load against the same ratio quiet.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import peer_sessions, time_peer  # noqa: E402


def busy_process(cpu):
    """A process spinning on `cpu` until killed: another program holding that core."""
    return subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setaffinity(0, {%d})\nwhile True: pass" % cpu])


def time_bench(bench, model, batch, threads, iterations, busy_core, has_busy_core=True):
    """bench's samples; under load through its own --busy-core, or (a build without it) a busy process."""
    command = [bench, "--model", model, "--batch", str(batch), "--threads", str(threads), "--iterations",
               str(iterations), "--warmup", "3", "--warmup-ms", "300", "--json"]
    spinner = None
    if busy_core is not None and has_busy_core:
        command += ["--busy-core", str(busy_core)]
    elif busy_core is not None:
        spinner = busy_process(busy_core)
    try:
        return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["samples_ms"]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    parser.add_argument("--baseline-bench", default=None, help="another bench build, timed in the same rounds")
    parser.add_argument("--model", required=True, help="the .qarep model")
    parser.add_argument("--onnx", required=True, help="the same model as ONNX QDQ, for OpenVINO")
    parser.add_argument("--busy-core", type=int, default=1)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    with open(args.model, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    size = int(header["__metadata__"]["input_height"])
    runtimes = ["qarep"] + (["qarep-before"] if args.baseline_bench else []) + ["openvino"]
    conditions = ["quiet", "busy"]
    samples = {}
    peers = {threads: peer_sessions(args.onnx, threads)["openvino"] for threads in (1, 2)}
    rng = np.random.default_rng(0)
    inputs = {b: np.ascontiguousarray(rng.integers(0, 256, size=(b, 3, size, size), dtype=np.uint8)) for b in args.batches}
    loads = []
    for round_index in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for batch in args.batches:
            for condition in conditions:
                busy_core = args.busy_core if condition == "busy" else None
                for threads in (1, 2):
                    key = lambda runtime: (runtime, batch, condition, threads)  # noqa: E731
                    samples.setdefault(key("qarep"), []).extend(
                        time_bench(args.bench, args.model, batch, threads, args.iterations, busy_core))
                    if args.baseline_bench:
                        samples.setdefault(key("qarep-before"), []).extend(
                            time_bench(args.baseline_bench, args.model, batch, threads, args.iterations, busy_core,
                                       has_busy_core=False))
                    spinner = busy_process(busy_core) if busy_core is not None else None
                    try:
                        time.sleep(0.05)
                        samples.setdefault(key("openvino"), []).extend(
                            time_peer(peers[threads], inputs[batch], args.iterations, 3))
                    finally:
                        if spinner is not None:
                            spinner.kill()
                            spinner.wait()
        print("round %d of %d done (1-minute load average %.2f)" % (round_index + 1, args.rounds, loads[-1]), flush=True)

    median = {k: float(np.median(v)) for k, v in samples.items()}
    print()
    print("| batch | condition | threads | " + " | ".join("%s ms" % r for r in runtimes) + " | QARep/OpenVINO |")
    print("|---|---|---|" + "---|" * len(runtimes) + "---|")
    for batch in args.batches:
        for condition in conditions:
            for threads in (1, 2):
                cells = ["%.2f" % median[(r, batch, condition, threads)] for r in runtimes]
                ratio = median[("qarep", batch, condition, threads)] / median[("openvino", batch, condition, threads)]
                print("| %d | %s | %d | %s | %.2f |" % (batch, condition, threads, " | ".join(cells), ratio))
    print()
    summary = []
    for batch in args.batches:
        two_over_one = median[("qarep", batch, "busy", 2)] / median[("qarep", batch, "busy", 1)]
        ov_busy = median[("qarep", batch, "busy", 2)] / median[("openvino", batch, "busy", 2)]
        ov_quiet = median[("qarep", batch, "quiet", 2)] / median[("openvino", batch, "quiet", 2)]
        line = ("batch %d: under load QARep 2 threads / 1 thread = %.3f (target <= 1.05: %s); QARep/OpenVINO at 2 "
                "threads %.2f under load vs %.2f quiet (target: no worse: %s)" % (
                    batch, two_over_one, "met" if two_over_one <= 1.05 else "NOT met", ov_busy, ov_quiet,
                    "met" if ov_busy <= ov_quiet else "NOT met"))
        if args.baseline_bench:
            for threads in (1, 2):
                line += "; quiet %dT before/after %.2f -> %.2f ms" % (
                    threads, median[("qarep-before", batch, "quiet", threads)], median[("qarep", batch, "quiet", threads)])
        summary.append(line)
        print(line)
    print("1-minute load average at the start of each round: " + ", ".join("%.2f" % x for x in loads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"median_ms": {"/".join(map(str, k)): v for k, v in median.items()},
                       "samples_ms": {"/".join(map(str, k)): v for k, v in samples.items()},
                       "load_averages": loads, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
