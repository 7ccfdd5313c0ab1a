"""Side-by-side latency of QARep, ONNX Runtime and OpenVINO on the same INT8 RepVGG models.

Run through bench/compare-peers, which prepares the venv and the models. For each model, batch size and
thread count the three runtimes are interleaved in rounds (ours through the `bench` executable, which
drives the C API; the peers in this process), so that load from elsewhere on a shared machine hits all of
them alike; medians are taken over all timed runs. Then our logits are compared with ONNX Runtime's on the
same QDQ graph.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qarep_ctypes import QARep  # noqa: E402
from spec_emulation import conv_layer, emulate  # noqa: E402


def read_safetensors(path):
    """The header and a tensor reader of a safetensors file (no dependency on the safetensors package)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    dtypes = {"F32": np.float32, "I32": np.int32, "I8": np.int8, "U8": np.uint8}

    def tensor(name):
        info = header[name]
        begin, end = info["data_offsets"]
        return np.frombuffer(data[8 + n + begin:8 + n + end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])

    return header, tensor


def make_ort_session(onnx_path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


def make_ov_request(onnx_path, threads):
    import openvino as ov

    compiled = ov.Core().compile_model(onnx_path, "CPU", {
        "INFERENCE_NUM_THREADS": str(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    })
    return compiled.create_infer_request()


def ready_ms(onnx_path, threads):
    """How long each peer takes to be ready (ms), its library already imported: ORT's session, OpenVINO's
    compiled model and request."""
    import onnxruntime  # noqa: F401
    import openvino  # noqa: F401

    started = time.perf_counter()
    make_ort_session(onnx_path, threads)
    ort_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    make_ov_request(onnx_path, threads)
    return {"onnxruntime": ort_ms, "openvino": (time.perf_counter() - started) * 1e3}


def fresh_ready_ms(onnx_path, threads):
    """ready_ms in a new Python process, as `bench` loads our model in a new process: the first session of
    a process also starts the runtime's threads and touches fresh memory, which a warm process has done."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--ready", onnx_path, str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def peer_sessions(onnx_path, threads):
    """Each peer's run function."""
    ort_session = make_ort_session(onnx_path, threads)
    request = make_ov_request(onnx_path, threads)

    def run_ort(x):
        return ort_session.run(None, {"pixels": x})[0]

    def run_ov(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data

    return {"onnxruntime": run_ort, "openvino": run_ov}


def time_peer(run, x, iterations, warmup):
    for _ in range(warmup):
        run(x)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        run(x)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def time_ours(bench, model, batch, threads, iterations, warmup):
    # A new bench process per round, while the peers' sessions stay warm in this process, so it warms up for
    # 300 ms first (when bench still linked OpenBLAS, whose thread spins for ~90 ms after loading, A0's first
    # 12 runs at batch 1 on 2 threads took up to 2x longer).
    out = subprocess.run([bench, "--model", model, "--batch", str(batch), "--threads", str(threads),
                          "--iterations", str(iterations), "--warmup", str(warmup), "--warmup-ms", "300", "--json"],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    return result["samples_ms"], result


def agreement(library, model, onnx_path, images):
    """Top-1 agreement and the largest logit difference in units of the FC's accumulator (pool scale x weight scale)."""
    import onnxruntime as ort

    ours_runtime = QARep(library, model, max_batch=len(images), threads=2)
    ours = ours_runtime.logits(images)
    ours_runtime.close()
    theirs = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(
        None, {"pixels": np.ascontiguousarray(images.transpose(0, 3, 1, 2))})[0]
    _, tensor = read_safetensors(model)
    lsb = tensor("pool.output_scale")[0] * tensor("fc.weight_scale").astype(np.float64)
    diff_lsb = np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) / lsb[None, :]
    return {
        "images": len(images),
        "top1_agreement": float((ours.argmax(1) == theirs.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(ours - theirs).max()),
        "max_diff_fc_lsb": float(diff_lsb.max()),
        "mean_diff_fc_lsb": float(diff_lsb.mean()),
    }


def activation_agreement(library, model, onnx_path, images):
    """Per-activation differences with ONNX Runtime on the same QDQ graph.

    A numpy statement of our arithmetic (spec_emulation) must first reproduce libqarep's logits bit for bit.
    Then each layer is fed ONNX Runtime's own previous output, so a difference is that layer's rounding alone
    rather than earlier 1-LSB differences compounded through the network."""
    import onnx
    import onnxruntime as ort

    header, tensor = read_safetensors(model)
    runtime = QARep(library, model, max_batch=len(images), threads=2)
    ours = runtime.logits(images)
    runtime.close()
    activations, _, logits = emulate(tensor, header, images)
    exact = bool(np.array_equal(ours.view(np.uint32), logits.view(np.uint32)))
    graph = onnx.load(onnx_path)
    names = ["conv.%d.quantized" % i for i in range(len(activations))]
    for name in names:
        graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None))
    outputs = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        names, {"pixels": np.ascontiguousarray(images.transpose(0, 3, 1, 2))})
    previous, per_layer = images, []
    for i, theirs in enumerate(outputs):
        theirs = np.ascontiguousarray(theirs.transpose(0, 2, 3, 1))
        diff = np.abs(conv_layer(tensor, header, i, previous).astype(np.int32) - theirs.astype(np.int32))
        per_layer.append({"max_lsb": int(diff.max()), "fraction_differing": float((diff > 0).mean())})
        previous = theirs
    return {"emulation_matches_runtime_bitwise": exact,
            "max_lsb_any_layer": max(layer["max_lsb"] for layer in per_layer),
            "max_fraction_differing": max(layer["fraction_differing"] for layer in per_layer),
            "layers": per_layer}


def load_images(folder, size, count, rng):
    """Real photos resized like the model's preprocessing (PIL bilinear, shorter side, center crop), or noise."""
    if folder and os.path.isdir(folder):
        from PIL import Image
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if f.lower().endswith((".jpg", ".jpeg", ".png")))[:count]
        images = []
        for f in files:
            im = Image.open(f).convert("RGB")
            scale = size / 0.875 / min(im.size)
            im = im.resize((max(size, round(im.size[0] * scale)), max(size, round(im.size[1] * scale))),
                           Image.BILINEAR)
            left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
            images.append(np.asarray(im.crop((left, top, left + size, top + size))))
        if images:
            return np.stack(images)
    return rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def peak_share(row, ms):
    """Percent of the int8 peak bench measured (MACs counted as full 3x3 taps) that `ms` per batch means."""
    peak = row["peak_gmacs_per_core"] * row["threads"]
    return 100 * row["batch"] * row["macs_per_image"] / (ms * 1e-3) / 1e9 / peak


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--ready":
        print(json.dumps(ready_ms(sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    parser.add_argument("--library", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="NAME=MODEL.qarep=MODEL.onnx")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10, help="timed runs per runtime per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", default=None, help="folder of photos for the agreement check")
    parser.add_argument("--agreement-images", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write all results here")
    parser.add_argument("--cpu-view", choices=["avx2", "avxvnni", "avx512bw", "avx512vnni"], default=None,
                        help="run every runtime (this process and bench) seeing this CPU with fewer extensions "
                             "(bench/peers/cpuid-mask.c), through --cpu-mask-library")
    parser.add_argument("--cpu-mask-library", default=None, help="cpuid-mask.c built as a shared library")
    args = parser.parse_args()
    if args.cpu_view is not None and os.environ.get("QAREP_CPUID_MASK") != args.cpu_view:
        # CPUID faulting must be on before the peers' libraries load and pick their kernels: start again under
        # the library. Children (bench, the load-time processes) inherit it.
        if args.cpu_mask_library is None:
            parser.error("--cpu-view needs --cpu-mask-library")
        env = dict(os.environ, QAREP_CPUID_MASK=args.cpu_view, LD_PRELOAD=os.path.abspath(args.cpu_mask_library))
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    if args.cpu_view is not None:
        seen = {"avx2": "without AVX-512, AVX-VNNI and AMX", "avxvnni": "with AVX-VNNI, without AVX-512 and AMX",
                "avx512bw": "with AVX-512 F/CD/BW/DQ/VL, without VNNI of either kind and AMX",
                "avx512vnni": "with AVX-512 VNNI, without AMX and VEX AVX-VNNI"}[args.cpu_view]
        print("CPU view: %s (CPUID %s; this machine's cores and caches)" % (args.cpu_view, seen), flush=True)

    rng = np.random.default_rng(0)
    rows, agreements = [], {}
    for spec in args.models:
        name, model, onnx_path = spec.split("=")
        header, _ = read_safetensors(model)
        size = int(header["__metadata__"]["input_height"])
        for threads in args.threads:
            peers = peer_sessions(onnx_path, threads)
            for batch in args.batches:
                x = np.ascontiguousarray(rng.integers(0, 256, size=(batch, 3, size, size), dtype=np.uint8))
                samples = {"qarep": [], "onnxruntime": [], "openvino": []}
                info = {}
                peaks, load_ms = [], {"qarep": [], "onnxruntime": [], "openvino": []}
                for _ in range(args.rounds):
                    ours, info = time_ours(args.bench, model, batch, threads, args.iterations, args.warmup)
                    peaks.append(info.get("peak_gmacs_per_core") or 0.0)
                    load_ms["qarep"].append(info.get("load_ms") or 0.0)
                    if batch == args.batches[0]:
                        for peer, ms in fresh_ready_ms(onnx_path, threads).items():
                            load_ms[peer].append(ms)
                    samples["qarep"] += ours
                    for peer, run in peers.items():
                        samples[peer] += time_peer(run, x, args.iterations, args.warmup)
                medians = {k: float(np.median(v)) for k, v in samples.items()}
                row = {"model": name, "batch": batch, "threads": threads, "runs": len(samples["qarep"]),
                       "qarep_kernel": info.get("kernel"), "cpu_view": args.cpu_view,
                       "median_ms": medians, "peak_fraction": info.get("peak_fraction"),
                       "macs_per_image": info.get("macs_per_image"),
                       # Load from elsewhere can only lower a measured peak: the highest of the rounds.
                       "peak_gmacs_per_core": max(peaks),
                       # Ready to run, each in a new process, medians of the rounds: our model load (bench)
                       # against ORT's session and OpenVINO's compiled model (the first batch's rows only).
                       "load_ms": {k: float(np.median(v)) if v else None for k, v in load_ms.items()},
                       "packed_weight_bytes": info.get("packed_weight_bytes")}
                rows.append(row)
                print("%-4s b%-2d %dT  qarep(%s) %7.2f ms  ort %7.2f ms  openvino %7.2f ms  ratio vs ort %.2f  vs ov %.2f  "
                      "(qarep %.0f img/s, %.0f%% of peak)" % (
                          name, batch, threads, info.get("kernel"), medians["qarep"], medians["onnxruntime"], medians["openvino"],
                          medians["qarep"] / medians["onnxruntime"], medians["qarep"] / medians["openvino"],
                          batch * 1e3 / medians["qarep"], peak_share(row, medians["qarep"])), flush=True)
        images = load_images(args.images, size, args.agreement_images, rng)
        agreements[name] = agreement(args.library, model, onnx_path, images)
        agreements[name]["activations"] = activation_agreement(args.library, model, onnx_path, images[:4])
        act = agreements[name]["activations"]
        print("%-4s activations vs onnxruntime, each layer fed ORT's previous output: max %d LSB, at most %.4f%% of "
              "a layer's values differ; numpy statement of our arithmetic == libqarep bitwise: %s" % (
                  name, act["max_lsb_any_layer"], 100 * act["max_fraction_differing"],
                  act["emulation_matches_runtime_bitwise"]), flush=True)
        print("%-4s logits vs onnxruntime on %d images: top-1 agreement %.1f%%, max abs logit difference %.5f" % (
            name, agreements[name]["images"], 100 * agreements[name]["top1_agreement"],
            agreements[name]["max_abs_logit_diff"]), flush=True)

    print()
    # Share of the int8 peak bench measured (MACs counted as full 3x3 taps), for the peers too: the same MACs
    # in their time.
    print("| model | batch | threads | QARep ms | ORT ms | OpenVINO ms | QARep/ORT | QARep/OV | QARep img/s | "
          "best peer img/s | QARep % peak | OpenVINO % peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median_ms"]
        best_peer = min(m["onnxruntime"], m["openvino"])
        print("| %s | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.1f | %.1f |" % (
            r["model"], r["batch"], r["threads"], m["qarep"], m["onnxruntime"], m["openvino"],
            m["qarep"] / m["onnxruntime"], m["qarep"] / m["openvino"], r["batch"] * 1e3 / m["qarep"],
            r["batch"] * 1e3 / best_peer, peak_share(r, m["qarep"]), peak_share(r, m["openvino"])))
    print()
    # Each in a new process (ours through bench; the peers' after importing their library), medians of the rounds.
    print("| model | threads | QARep load ms | ORT session ms | OpenVINO compile ms | QARep packed weights MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["batch"] != args.batches[0]:
            continue
        load = r["load_ms"]
        print("| %s | %d | %.1f | %.1f | %.1f | %.1f |" % (r["model"], r["threads"], load["qarep"], load["onnxruntime"],
                                                        load["openvino"], (r["packed_weight_bytes"] or 0) / 2**20))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "agreement": agreements}, f, indent=1)


if __name__ == "__main__":
    main()
