"""Which int8 route gives the better phone model, per data source: melkit's converter route or the maintained
quantizer (PyPI ``litert-quantizer``, formerly ai-edge-quantizer), issue 23.

The quantizer works on an already converted float .tflite by recipe. Candidates (each against the float32
model's decisions, on the trained scale: a folded model's raw output is unfolded first, and every decision is
``P(mel) >= the float32 card's trained_threshold``):

- ``melkit int8``: the given int8 file (equalisation + compensated rounding + decision grid + fold);
- ``q a8w8``: the quantizer's default static int8 recipe (int8 activations per tensor, int8 weights per channel)
  and its default calibration statistic on the float32 file: each range is a moving average (factor 0.95) of
  the per-image min/max, so typical ranges, not the extremes; ``+gptq``: its GPTQ weight rounding (in 0.11 it
  applies to FULLY_CONNECTED ops only: the two-score layer and a domain guard's);
- ``minmax``: the same recipe calibrated on the global min/max (what TFLiteConverter keeps; the library's
  ``min_max_update`` given to its Calibrator); every further quantizer candidate uses it; ``+octav``: OCTAV
  optimal weight clipping (every weight tensor);
- with ``--run``: ``float32 eq`` (melkit's range-equalised float model, metadata as the float32 file's: the
  sanity row, equalisation alone) and the quantizer on it (``eq q a8w8``, ``+gptq``, ``eq q a8w8 minmax``),
  and ``+grid+fold``: melkit's decision grid and threshold fold applied to the quantizer's output where they
  apply (the note under the tables says whether they did);
- ``a16w8 top-K`` / ``float top-K``: int16 activations (16x8) or float kept for the K ops that add the most
  error in the base route's a8w8 model (largest drop of the signal-to-noise ratio from an op's activation
  input to its output, the quantizer's per-tensor validation on 32 calibration images); ``--int16-all``:
  every activation in int16 (reference kernels, slow);
- ``allsrc``: the base route calibrated (and, with ``--run``, equalised) on images drawn equally from every
  training source.

The base route is the equalised float model with ``--run`` and the float32 file without it. Calibration uses
the run's training split (``--run``), else the split.csv beside the float32 model (or ``--split-csv``) over
the card's training data folders under ``--data-root``; one synthetic full-range image is added, as melkit's
converter does, so the input's int8 quantization is the contract's.

Evaluation sets (under ``--data-root``, default ../shared/data): HAM10000 test and BCN20000 test (by the
split file), ISIC 2017 test (its metadata's ``split`` column), ISIC 2016 (all). A set whose source the split
file does not hold is skipped. Per candidate and set: agreement and flips with float32, |dAUC|, mean and max
|dP|, and the domain guard's in-domain agreement where both models have one. Per candidate: size, input and
output types, whether the Android core (contract input) and MediaPipe Tasks (its venv, on a few images) read
it, and latency as a ratio to melkit's int8 measured in the same run with LiteRT's own
``benchmark_litert_model`` (one thread, the median of each of a few interleaved rounds, the smallest kept).

    .venv/bin/python benchmarks/quantizer_routes.py --float32 F32.tflite --int8 I8.tflite [--run RUN]
        [--out OUT] [--calibration-images 500] [--sets ham10000-test,isic2017-test,isic2016,bcn20000-test]
        [--limit N] [--top-k 5] [--int16-all]

The quantizer step runs as a subprocess (files in, files out) in ``--quantizer-python`` (default: this
interpreter; a separate venv works as well, it needs only numpy and litert-quantizer). Prints markdown tables
and writes OUT/quantizer_routes.json and the candidate models under OUT/models/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"
SIGNATURE = "serving_default"
SETS = {  # name: (data folder, how the set is chosen)
    "ham10000-test": ("ham10000-nv-mel", "split"),
    "isic2017-test": ("isic2017-nv-mel", "fixed"),
    "isic2016": ("isic2016-nv-mel", "all"),
    "bcn20000-test": ("bcn20000-nv-mel-84", "split"),
}

# ---------------------------------------------------------------------------------------------------------
# The quantizer step: runs in --quantizer-python, needs only numpy and litert_quantizer (no melkit).

A8 = {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"}
A16 = {"num_bits": 16, "symmetric": True, "granularity": "TENSORWISE", "dtype": "INT"}
W8 = {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"}


def rule(regex=".*", operation="*", activations=A8, algorithm="min_max_uniform_quantize") -> dict:
    """One recipe entry: static quantization (integer compute) with ``activations`` and int8 channelwise weights."""
    return {"regex": regex, "operation": operation, "algorithm_key": algorithm,
            "op_config": {"activation_tensor_config": activations, "weight_tensor_config": W8,
                          "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
                          "min_weight_elements": 0}}


def scope(tensor_name: str) -> str:
    """The recipe regex of exactly the op writing ``tensor_name`` (the quantizer's scope is 'name;')."""
    return "^" + re.escape(tensor_name) + ";$"


def job_quantize(spec: dict) -> dict:
    """Calibrate ``spec['float_model']`` on the saved inputs and quantize it by ``spec['recipe']``.

    ``statistic``: "moving-average" is the library's own (each tensor's range an exponential moving average,
    factor 0.95, of the per-image min/max: typical ranges, the last images weigh most); "min-max" the global
    min/max over all images, what TFLiteConverter's calibration keeps (the library's min_max_update, passed
    to its Calibrator)."""
    from litert_quantizer import calibrator, quantizer, recipe_manager
    from litert_quantizer.utils import qsv_utils

    inputs = np.load(spec["calibration"], mmap_mode="r")
    q = quantizer.Quantizer(spec["float_model"], spec["recipe"])
    t = time.time()
    data = {SIGNATURE: [{spec["input_name"]: x[None]} for x in inputs]}  # a list: it is read more than once
    threads = spec.get("threads", 1)
    cal = None
    if q.need_calibration and spec.get("statistic") == "min-max":
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(spec["recipe"])
        calib = calibrator.Calibrator(Path(spec["float_model"]).read_bytes(), num_threads=threads,
                                      qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate(data, manager)
        cal = calib.get_model_qsvs()
    elif q.need_calibration:
        cal = q.calibrate(data, num_threads=threads)
    result = q.quantize(cal, enable_progress_report=False)
    Path(spec["out"]).write_bytes(bytes(result.quantized_model))
    return {"seconds": round(time.time() - t, 1), "size_bytes": len(result.quantized_model)}


def job_errors(spec: dict) -> list:
    """Per op of the quantized model: its output's SNR against the float model (dB) and the drop from its
    worst activation input's, on the first ``spec['n']`` calibration inputs (the quantizer's validation)."""
    from litert_quantizer import quantizer
    from litert_quantizer.utils import tfl_flatbuffer_utils as fb
    from litert_quantizer.utils.validation_utils import ValidationErrorMetric

    inputs = np.load(spec["calibration"], mmap_mode="r")[: spec["n"]]
    q = quantizer.Quantizer(spec["float_model"], previous_quantized_model=spec["quantized_model"])
    res = q.validate({SIGNATURE: [{spec["input_name"]: np.asarray(x[None])} for x in inputs]},
                     [ValidationErrorMetric.SNR], num_threads=spec.get("threads", 1))
    snr = {}
    for name, metrics in res.get_all_tensor_results().items():
        value = metrics.get("snr") if isinstance(metrics, dict) else None
        if value is not None:
            snr[name] = 10 * np.log10(max(float(value), 1e-12))
    model = fb.read_model(fb.get_model_content(spec["float_model"]))
    graph = model.subgraphs[0]
    rows = []
    for i, op in enumerate(graph.operators):
        outs = [fb.get_tensor_name(graph.tensors[t]) for t in op.outputs if t >= 0]
        ins = [fb.get_tensor_name(graph.tensors[t]) for t in op.inputs if t >= 0]
        if len(outs) != 1 or outs[0] not in snr:
            continue
        known = [snr[n] for n in ins if n in snr]  # activations only: constants are not compared
        before = min(known) if known else None
        rows.append({"tensor": outs[0], "op": fb.get_op_name_by_index(model, 0, i), "snr_db": snr[outs[0]],
                     "drop_db": None if before is None else before - snr[outs[0]]})
    return rows


def run_job(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    result = {"quantize": job_quantize, "errors": job_errors}[spec["kind"]](spec)
    Path(spec["result"]).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------------------
# The benchmark: runs in melkit's venv.

def quantizer_call(python: str, spec: dict, work: Path):
    """Run one job in ``python`` and return its result (RuntimeError with the tail of its stderr if it fails)."""
    spec = dict(spec, result=str(work / f"result-{os.getpid()}-{time.time_ns()}.json"))
    job = work / "job.json"
    job.write_text(json.dumps(spec))
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--job", str(job)], check=False,
                          capture_output=True,
                          text=True)
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
        raise RuntimeError(" | ".join(tail) or f"exit {proc.returncode}")
    return json.loads(Path(spec["result"]).read_text())


def pick(records, n, seed=0):
    """A seeded choice of ``n`` records in their order (all of them when ``n`` is None or not smaller)."""
    if n is None or n >= len(records):
        return list(records)
    rng = np.random.default_rng(seed)
    return [records[i] for i in sorted(rng.choice(len(records), size=n, replace=False))]


def calibration_images(train, contract, n, seed, by_source):
    """n-1 training images + melkit's full-range image (uint8 q). ``by_source``: equal parts of each source;
    else the same seeded choice as melkit.convert.representative.representative_images."""
    from melkit.convert.representative import full_range_image
    from melkit.data.pipeline import load_images

    if by_source:
        sources = sorted({r.source for r in train})
        share = [(n - 1) // len(sources) + (i < (n - 1) % len(sources)) for i in range(len(sources))]
        chosen = [r for s, k in zip(sources, share) for r in pick([r for r in train if r.source == s], k, seed)]
    else:
        chosen = pick(train, n - 1, seed)
    arr = load_images(chosen, contract, desc="calibration")
    counts = {s: sum(r.source == s for r in arr.records) for s in sorted({r.source for r in arr.records})}
    return np.concatenate([arr.images, full_range_image(contract.image_size)[None]]), counts


def model_input(q, detail, contract_scale):
    """Contract uint8 q (1,S,S,3) -> the model's input: float normalised, or quantized by its own scale."""
    from melkit.core.litert import to_input
    from melkit.data.contract import normalize

    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if dtype == np.float32:
        return normalize(q)
    contract_zero = {np.dtype(np.uint8): 128, np.dtype(np.int8): 0}.get(dtype)
    if contract_zero is not None and np.isclose(scale, contract_scale) and zero == contract_zero:
        return to_input(q, detail)
    info = np.iinfo(dtype)
    return np.clip(np.round(normalize(q) / scale) + zero, info.min, info.max).astype(dtype)


def io_summary(data, contract_scale) -> dict:
    from melkit.core.litert import load_interpreter

    interp = load_interpreter(data)
    d = interp.get_input_details()[0]
    scale, zero = d["quantization"]
    dtype = np.dtype(d["dtype"]).name
    contract = dtype == "float32" or (np.isclose(scale, contract_scale) and zero == {"uint8": 128, "int8": 0}
                                      .get(dtype))
    return {"input": dtype, "input_quantization": [float(scale), int(zero)] if scale else None,
            "outputs": [np.dtype(o["dtype"]).name for o in interp.get_output_details()],
            # the Android core (TensorSpec / ContractPreprocessor) takes uint8, int8 or float32 inputs on the
            # contract's quantization and uint8/int8/float32 outputs
            "android_core": bool(contract and dtype in ("uint8", "int8", "float32")
                                 and all(np.dtype(o["dtype"]).name in ("uint8", "int8", "float32")
                                         for o in interp.get_output_details())),
            "metadata": b"TFLITE_METADATA" in data}


def outputs(data, images_q, prob_name, guard_name, contract_scale, threads=1):
    """Raw P(mel) (and the guard's score, or None) per image, one invoke per image as on the phone."""
    from melkit.core.litert import dequantized, load_interpreter
    from melkit.data.records import LABELS

    interp = load_interpreter(data, num_threads=threads)
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    by_name = {o["name"]: o for o in outs}
    prob = by_name.get(prob_name) or next(o for o in outs if int(o["shape"][-1]) == len(LABELS))
    guard = by_name.get(guard_name) if guard_name else None
    if guard is not None and int(np.prod(guard["shape"])) != 1:  # a name reused by another model's probabilities
        guard = None
    p = np.empty(len(images_q))
    g = np.empty(len(images_q)) if guard is not None else None
    for i, q in enumerate(images_q):
        interp.set_tensor(inp["index"], model_input(q[None], inp, contract_scale))
        interp.invoke()
        p[i] = dequantized(interp, prob)[LABELS.index("mel")]
        if guard is not None:
            g[i] = dequantized(interp, guard)[0]
    return p, g


def compare(p_ref, p, labels, threshold, g_ref=None, g=None, guard_threshold=None) -> dict:
    """Agreement of decisions at ``threshold`` (trained scale), flips, |dAUC|, mean and max |dP|."""
    from melkit.core.metrics import roc_auc

    flips = int(np.sum((p >= threshold) != (p_ref >= threshold)))
    both = len(set(labels.tolist())) == 2
    d = {"n": len(p), "agreement": 1 - flips / len(p), "flips": flips,
         "flips_to_mel": int(np.sum((p >= threshold) & (p_ref < threshold))),
         "auc": float(roc_auc(labels, p)) if both else None,
         "d_auc": abs(float(roc_auc(labels, p) - roc_auc(labels, p_ref))) if both else None,
         "mean_dp": float(np.mean(np.abs(p - p_ref))), "max_dp": float(np.max(np.abs(p - p_ref)))}
    if g is not None and g_ref is not None and guard_threshold is not None:
        d["guard_agreement"] = float(np.mean((g <= guard_threshold) == (g_ref <= guard_threshold)))
    return d


def interpreter_ms(path, image_q, threads, runs, contract_scale) -> float:
    """Median invoke time of the LiteRT Interpreter (XNNPACK on where it applies), the fallback timer for models
    benchmark_litert_model cannot feed (it fails on int16 inputs)."""
    from melkit.core.litert import load_interpreter

    interp = load_interpreter(str(path), num_threads=threads)
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], model_input(image_q[None], inp, contract_scale))
    times = []
    for _ in range(runs + max(3, runs // 10)):
        t = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times[max(3, runs // 10):]))


def latency(paths: dict, threads: int, runs: int, rounds: int) -> dict:
    """name -> {median_ms, rounds} from LiteRT's benchmark_litert_model, rounds interleaved over the models."""
    from melkit.bench import litert_tool

    if not litert_tool.available():
        return {name: {"error": "ai_edge_litert.tools.benchmark_litert_model not available"} for name in paths}
    seen = {name: [] for name in paths}
    errors = {}
    for _ in range(rounds):
        for name, path in paths.items():
            if name in errors:
                continue
            r = litert_tool.run(path, threads, runs, max(3, runs // 10))
            if "error" in r:
                errors[name] = r["error"]
            else:
                seen[name].append(float(r["latency"]["median_ms"]))
    return {name: ({"error": errors[name]} if name in errors else
                   {"median_ms": min(v), "rounds_ms": v}) for name, v in seen.items()}


def mediapipe_reads(path: Path, images_q, p_raw) -> dict:
    """Whether MediaPipe Tasks' ImageClassifier (tests/mediapipe_client.py in its venv) runs the model, and its
    top category against LiteRT's raw argmax (P(mel) > 0.5) on the same images."""
    client = ROOT / "tests" / "mediapipe_client.py"
    python = Path(os.environ.get("MELKIT_MEDIAPIPE_PYTHON", ROOT / ".venv-mediapipe" / "bin" / "python"))
    if not python.exists() or not client.is_file():
        return {"reads": None, "note": f"no mediapipe venv at {python}"}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", images_q)
        proc = subprocess.run([str(python), str(client), str(path), str(Path(tmp) / "images.npy")], check=False,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:]
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"reads": False, "error": f"{why}: {' '.join(tail)}"[:300]}
    top = np.array([r["top"] for r in json.loads(proc.stdout.strip().splitlines()[-1])])
    own = np.where(p_raw > 0.5, "mel", "nv")
    return {"reads": True, "n": len(top), "top_agrees": float(np.mean(top == own))}


def eval_sets(names, f32_card, split_csv, data_root, limit):
    """name -> (records, reason they were skipped or None)."""
    from melkit.data.readers import read_dataset
    from melkit.data.split import read_split_csv

    mapping = read_split_csv(split_csv) if split_csv and Path(split_csv).is_file() else None
    out = {}
    for name in names:
        folder, how = SETS[name]
        root = Path(data_root) / folder
        if not root.is_dir():
            out[name] = ([], f"{root} is not there")
            continue
        records = read_dataset(root).records
        if how == "fixed":
            records = [r for r in records if r.fixed_split == "test"]
        elif how == "split":
            if mapping is None:
                out[name] = ([], "no split file")
                continue
            if not any(r.image_id in mapping for r in records):
                out[name] = ([], f"{Path(split_csv).name} holds none of its images (not trained on)")
                continue
            records = [r for r in records if mapping.get(r.image_id) == "test"]
        out[name] = (pick(records, limit), None)
    return out


def training_records(run, config, f32_card, split_csv, data_root):
    from melkit.core.run import split_records
    from melkit.data.readers import read_sources
    from melkit.data.split import read_split_csv

    if run is not None:
        return split_records(run, config, "train")
    names = [s.strip() for s in str(f32_card.training_data.get("dir", "")).split(" + ") if s.strip()]
    dirs = [Path(n) if Path(n).is_dir() else Path(data_root) / Path(n).name for n in names]
    mapping = read_split_csv(split_csv)
    return [r for r in read_sources(dirs).records if mapping.get(r.image_id) == "train"]


def fold_logit_of(card):
    from melkit.core.probability import fold_logit

    return fold_logit(card)


def fmt_pct(x):
    return "—" if x is None else f"{100 * x:.2f} %"


def tables(report) -> str:
    sets = [s for s in report["sets"] if report["sets"][s]["n"]]
    head = ["candidate", "size MB", "latency (x melkit int8)", "input", "Android core", "MediaPipe"]
    lines = ["| " + " | ".join(head + [f"{s} agreement (flips)" for s in sets] + ["worst"]) + " |",
             "|" + "---|" * (len(head) + len(sets) + 1)]
    for c in report["candidates"]:
        if c.get("skipped"):
            continue
        res = c["results"]
        lat = c.get("latency", {})
        ratio = lat.get("ratio")
        mp = c.get("mediapipe", {})
        mp_text = ("—" if mp.get("reads") is None else f"no ({mp['error'].split(':')[0]})" if not mp["reads"]
                   else f"yes ({100 * mp['top_agrees']:.0f} % same top)")
        cells = [c["name"], f"{c['size_bytes'] / 1e6:.2f}",
                 "—" if ratio is None else f"{lat['median_ms']:.2f} ms ({ratio:.2f}x){'*' if 'tool' in lat else ''}",
                 c["io"]["input"],
                 "yes" if c["io"]["android_core"] else "no", mp_text]
        cells += [f"{fmt_pct(res[s]['agreement'])} ({res[s]['flips']})" for s in sets]
        cells.append(fmt_pct(min(res[s]["agreement"] for s in sets)) if sets else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| candidate | set | n | agreement | flips (to mel) | abs dAUC | mean abs dP | max abs dP | guard |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in report["candidates"]:
        if c.get("skipped"):
            continue
        for s in sets:
            r = c["results"][s]
            d_auc = "—" if r["d_auc"] is None else f"{r['d_auc']:.4f}"
            lines.append(f"| {c['name']} | {s} | {r['n']} | {fmt_pct(r['agreement'])} | {r['flips']} "
                         f"({r['flips_to_mel']}) | {d_auc} | {r['mean_dp']:.4f} | {r['max_dp']:.3f} | "
                         f"{fmt_pct(r.get('guard_agreement'))} |")
    lines.append("")
    if any("tool" in c.get("latency", {}) for c in report["candidates"]):
        lines.append("- latency marked *: benchmark_litert_model failed on it; the Interpreter's invoke time, as a "
                     "ratio to melkit int8's by the same timer")
    if report["selective_ops"]:
        lines.append("- top-K ops (largest SNR drop from input to output in the base a8w8 model): " + "; ".join(
            f"{r['op']} `{r['tensor'].split(';')[0]}` {r['drop_db']:.1f} dB" for r in report["selective_ops"]))
    for c in report["candidates"]:
        if c.get("skipped"):
            lines.append(f"- {c['name']}: skipped, {c['skipped']}")
        elif c.get("after"):
            fold = c["after"]["threshold_fold"]
            lines.append(f"- {c['name']}: decision grid {'applied' if c['after']['decision_grid'] else 'not applied'}"
                         f"; fold {'applied' if fold.get('folded', True) else 'not applied: ' + fold['reason']}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--float32", required=True, help="the float32 .tflite (card beside it): the reference")
    ap.add_argument("--int8", required=True, help="melkit's int8 .tflite (card beside it)")
    ap.add_argument("--run", help="the melkit train run both were converted from (equalised candidates)")
    ap.add_argument("--out", default="runs/quantizer_routes")
    ap.add_argument("--calibration-images", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--limit", type=int, help="at most N images per set (a seeded choice): a quick smoke run")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--split-csv", help="default: RUN/split.csv, else split.csv beside --float32")
    ap.add_argument("--equalize-margin", type=float, help="default: the int8 card's, else 1.5")
    ap.add_argument("--top-k", type=int, default=5, help="ops kept in int16 / float by the selective candidates")
    ap.add_argument("--int16-all", action="store_true", help="also every activation in int16 (slow)")
    ap.add_argument("--latency-runs", type=int, default=50)
    ap.add_argument("--latency-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="interpreter threads (evaluation and latency)")
    ap.add_argument("--mediapipe-images", type=int, default=32, help="0: no MediaPipe check")
    ap.add_argument("--quantizer-python", default=sys.executable)
    args = ap.parse_args(argv)

    from melkit.core.card import read_model
    from melkit.core.metrics import roc_auc
    from melkit.core.probability import unfold
    from melkit.data.contract import CONTRACT
    from melkit.data.pipeline import load_images

    out = Path(args.out)
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    f32_card, f32_data = read_model(args.float32)
    i8_card, i8_data = read_model(args.int8)
    contract = f32_card.preprocessing
    contract_scale = float(CONTRACT.input_quantization["scale"])
    threshold = f32_card.trained_threshold  # decisions on the trained (unfolded) scale
    guard_name = f32_card.guard_output.name if f32_card.domain_guard else None
    guard_threshold = f32_card.guard_threshold
    run = Path(args.run) if args.run else None
    config = None
    if run is not None:
        from melkit.core.run import load_run
        config = load_run(run)
    split_csv = args.split_csv or (run / "split.csv" if run else Path(args.float32).parent / "split.csv")
    margin = args.equalize_margin or ((i8_card.conversion or {}).get("range_equalization") or {}).get("margin") or 1.5
    input_name = "image"
    t0 = time.time()

    def say(msg):
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    # --- calibration sets --------------------------------------------------------------------------------
    train = training_records(run, config, f32_card, split_csv, args.data_root)
    from melkit.data.contract import normalize
    calib, calib_counts = {}, {}
    for key, by_source in (("train", False), ("allsrc", True)):
        q, counts = calibration_images(train, contract, args.calibration_images, args.seed, by_source)
        calib[key] = q
        calib_counts[key] = counts
        np.save(out / f"calibration-{key}.npy", normalize(q).astype(np.float32))
        say(f"calibration '{key}': {len(q)} images {counts} + 1 full-range")

    # --- float sources: the float32 file, and with --run the equalised float model ----------------------
    f32_path = out / "models" / "float32.tflite"
    f32_path.write_bytes(f32_data)
    floats = {"f32": (f32_path, fold_logit_of(f32_card))}
    eq_note = None
    if run is not None:
        from melkit.convert.converter import DESCRIPTION
        from melkit.convert.equalize import equalize_activation_ranges
        from melkit.convert.export import with_two_scores
        from melkit.convert.metadata import ModelInfo, add_metadata
        from melkit.convert.variants import convert
        from melkit.core.run import load_trained_model

        export = with_two_scores(load_trained_model(run)[0])
        # the float32 file's metadata (labels, normalisation), as melkit convert writes it
        info = ModelInfo(name=f32_card.name, version=f32_card.version, description=DESCRIPTION,
                         author=f32_card.author or "", license=f32_card.license or "", labels=list(f32_card.labels),
                         image_size=f32_card.image_size)
        for key in ("train", "allsrc"):
            eq, n_eq = equalize_activation_ranges(export, calib[key], margin)
            path = models_dir / f"float32-eq-{key}.tflite"
            path.write_bytes(add_metadata(convert(eq, "float32"), info))
            floats[f"eq-{key}"] = (path, None)  # converted here: not folded
            say(f"equalised float ({key} images): {n_eq} ReLU6 outputs rescaled, margin {margin:g}")
        eq_note = f"margin {margin:g}"
    base = "eq-train" if run is not None else "f32"
    base_allsrc = "eq-allsrc" if run is not None else "f32"
    base_label = "eq " if run is not None else ""

    # --- candidates -------------------------------------------------------------------------------------
    candidates = [{"name": "melkit int8", "route": "melkit convert (given file)", "data": i8_data,
                   "fold": fold_logit_of(i8_card), "prob": i8_card.output.name,
                   "guard": i8_card.guard_output.name if i8_card.domain_guard else None}]
    work = Path(tempfile.mkdtemp(prefix="quantizer-routes-"))

    def quantized(name, route, source, recipe, calibration="train", after=None, statistic="min-max"):
        path, fold = floats[source]
        target = models_dir / (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") + ".tflite")
        c = {"name": name, "route": route, "recipe": recipe, "calibration": calibration, "statistic": statistic,
             "source": source, "fold": fold, "prob": f32_card.output.name,
             "guard": guard_name if source == "f32" else None}  # the equalised float is built without a guard
        try:
            r = quantizer_call(args.quantizer_python, {
                "kind": "quantize", "float_model": str(path), "recipe": recipe, "input_name": input_name,
                "calibration": str(out / f"calibration-{calibration}.npy"), "out": str(target),
                "statistic": statistic, "threads": args.threads}, work)
            data = target.read_bytes()
            if after is not None:
                data, note, fold = after(data)
                c["after"], c["fold"] = note, fold
                target.write_bytes(data)
            c.update(data=data, quantize_seconds=r["seconds"])
            say(f"{name}: quantized in {r['seconds']} s, {len(data) / 1e6:.2f} MB")
        except Exception as e:  # a recipe the quantizer refuses is a result too
            c["skipped"] = f"{type(e).__name__}: {e}"
            say(f"{name}: FAILED {c['skipped']}")
        candidates.append(c)
        return c

    a8w8 = [rule()]
    gptq = a8w8 + [rule(operation="FULLY_CONNECTED", algorithm="GPTQ")]
    ema = "moving-average"
    quantized("q a8w8", "litert-quantizer default a8w8 and calibration on the float32 file", "f32", a8w8,
              statistic=ema)
    # GPTQ's Hessians are merged by the library's own update: it keeps the moving average
    quantized("q a8w8 +gptq", "the same, GPTQ rounding of FULLY_CONNECTED weights", "f32", gptq, statistic=ema)
    quantized("q a8w8 minmax", "a8w8, calibration ranges the global min/max", "f32", a8w8)
    quantized("q a8w8 minmax +octav", "a8w8 min/max, OCTAV weight clipping", "f32", [rule(algorithm="OCTAV")])
    if run is None:
        for name in ("float32 eq", "eq q a8w8", "eq q a8w8 +gptq", "eq q a8w8 minmax", "eq q a8w8 minmax +grid+fold"):
            candidates.append({"name": name, "skipped": "needs --run (the equalised float model)"})
    else:
        candidates.append({"name": "float32 eq", "route": f"melkit range equalisation ({eq_note}), float32",
                           "data": floats["eq-train"][0].read_bytes(), "fold": None, "prob": f32_card.output.name,
                           "guard": None})
        quantized("eq q a8w8", "litert-quantizer default a8w8 on melkit's equalised float model", "eq-train", a8w8,
                  statistic=ema)
        quantized("eq q a8w8 +gptq", "the same, GPTQ on FULLY_CONNECTED", "eq-train", gptq, statistic=ema)
        quantized("eq q a8w8 minmax", "a8w8 min/max on the equalised float model", "eq-train", a8w8)

        def grid_and_fold(data):
            from melkit.convert.decision_grid import align_to_threshold
            from melkit.convert.fold import fold_threshold

            data, grid = align_to_threshold(data, threshold)
            data, record = fold_threshold(data, threshold, grid)
            folded = record.pop("folded")
            note = {"decision_grid": grid, "threshold_fold": record if folded else {"folded": False, **record}}
            return data, note, (float(record["logit"]) if folded else None)

        quantized("eq q a8w8 minmax +grid+fold", "eq q a8w8 minmax, then melkit's decision grid and threshold fold",
                  "eq-train", a8w8, after=grid_and_fold)

    # selective precision: the ops adding most error in the base route's a8w8 model
    base_a8w8 = next((c for c in candidates if c["name"] == f"{base_label}q a8w8 minmax" and "data" in c), None)
    worst = []
    if base_a8w8 is not None and args.top_k > 0:
        try:
            rows = quantizer_call(args.quantizer_python, {
                "kind": "errors", "float_model": str(floats[base][0]), "input_name": input_name,
                "quantized_model": str(models_dir / (re.sub(r"[^A-Za-z0-9]+", "-", base_a8w8["name"]).strip("-")
                                                     + ".tflite")),
                "calibration": str(out / "calibration-train.npy"), "n": 32, "threads": args.threads}, work)
            ranked = sorted((r for r in rows if r["drop_db"] is not None), key=lambda r: -r["drop_db"])
            worst = ranked[: args.top_k]
            say("largest SNR drops: " + "; ".join(f"{r['op']} {r['tensor'][:60]} {r['drop_db']:.1f} dB"
                                                 for r in worst))
        except Exception as e:
            say(f"per-tensor error report FAILED: {e}")
    if worst:
        names = [r["tensor"] for r in worst]
        quantized(f"{base_label}q minmax a16w8 top-{len(names)}", "a8w8, int16 activations for the ops with the largest "
                  "SNR drop", base, a8w8 + [rule(regex=scope(n), activations=A16) for n in names])
        quantized(f"{base_label}q minmax float top-{len(names)}", "a8w8, the ops with the largest SNR drop left in float",
                  base, a8w8 + [{"regex": scope(n), "operation": "*", "algorithm_key": "no_quantize"} for n in names])
    else:
        candidates.append({"name": "selective a16w8 / float", "skipped": "no per-tensor error report"})
    if args.int16_all:
        quantized(f"{base_label}q minmax a16w8", "every activation int16 (16x8)", base, [rule(activations=A16)])
    quantized(f"{base_label}q a8w8 minmax allsrc", "a8w8, calibration drawn equally from every training source"
              + (" (equalised on them too)" if run is not None else ""), base_allsrc, a8w8, calibration="allsrc")

    # --- evaluation -------------------------------------------------------------------------------------
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise SystemExit(f"unknown set {unknown[0]!r}: one of {', '.join(SETS)}")
    chosen = eval_sets(sets, f32_card, split_csv, args.data_root, args.limit)
    live = [c for c in candidates if "data" in c]
    for c in live:
        c["results"] = {}
        c["size_bytes"] = len(c["data"])
        c["io"] = io_summary(c["data"], contract_scale)
    report_sets = {}
    mp_images = None
    for s in sets:
        records, reason = chosen[s]
        if reason:
            report_sets[s] = {"n": 0, "skipped": reason}
            say(f"{s}: skipped, {reason}")
            continue
        arr = load_images(records, contract, desc=s)
        labels = arr.labels
        p_ref_raw, g_ref = outputs(f32_data, arr.images, f32_card.output.name, guard_name, contract_scale,
                                   args.threads)
        p_ref = unfold(p_ref_raw, fold_logit_of(f32_card))
        report_sets[s] = {"n": len(labels), "mel": int(labels.sum()),
                          "float32_auc": float(roc_auc(labels, p_ref)) if len(set(labels.tolist())) == 2 else None,
                          "near_threshold": int(np.sum(np.abs(p_ref - threshold) < 0.02))}
        if mp_images is None:
            mp_images = arr.images[: args.mediapipe_images]
        for c in live:
            p_raw, g = outputs(c["data"], arr.images, c["prob"], c["guard"], contract_scale, args.threads)
            c["results"][s] = compare(p_ref, unfold(p_raw, c["fold"]), labels, threshold, g_ref, g, guard_threshold)
            if s == next(x for x in sets if not chosen[x][1]) and args.mediapipe_images:
                c["_mp_p"] = p_raw[: args.mediapipe_images]
        say(f"{s}: {len(labels)} images, float32 AUC {report_sets[s]['float32_auc']}; "
            + ", ".join(f"{c['name']} {100 * c['results'][s]['agreement']:.2f}%" for c in live))

    # --- size, latency, readers -------------------------------------------------------------------------
    paths = {}
    for c in live:
        path = models_dir / (re.sub(r"[^A-Za-z0-9]+", "-", c["name"]).strip("-") + ".tflite")
        if not path.is_file() or path.read_bytes() != c["data"]:
            path.write_bytes(c["data"])
        c["file"] = str(path)
        paths[c["name"]] = path
    say("latency (benchmark_litert_model) ...")
    lat = latency(paths, args.threads, args.latency_runs, args.latency_rounds)
    ref = lat.get("melkit int8", {}).get("median_ms")
    failed = [c for c in live if "error" in lat[c["name"]]]
    ref_fallback = (interpreter_ms(paths["melkit int8"], mp_images[0], args.threads, args.latency_runs,
                                   contract_scale) if failed and mp_images is not None else None)
    for c in live:
        c["latency"] = dict(lat[c["name"]])
        if ref and "median_ms" in c["latency"]:
            c["latency"]["ratio"] = c["latency"]["median_ms"] / ref
        elif ref_fallback:  # the same Interpreter timer for it and melkit's int8
            ms = interpreter_ms(paths[c["name"]], mp_images[0], args.threads, args.latency_runs, contract_scale)
            c["latency"].update(median_ms=ms, ratio=ms / ref_fallback, tool="Interpreter invoke (fallback)",
                                melkit_int8_ms=ref_fallback)
        if mp_images is not None and len(mp_images) and "_mp_p" in c:
            c["mediapipe"] = mediapipe_reads(Path(c["file"]), mp_images, c.pop("_mp_p"))

    report = {
        "float32": str(args.float32), "int8": str(args.int8), "run": str(run) if run else None,
        "threshold_trained_scale": threshold, "guard_threshold": guard_threshold,
        "calibration": {"images": args.calibration_images, "seed": args.seed, "by_source": calib_counts,
                        "split_csv": str(split_csv)},
        "equalize_margin": margin if run else None, "limit": args.limit, "threads": args.threads,
        "selective_ops": worst, "sets": report_sets,
        "candidates": [{k: v for k, v in c.items() if k not in ("data", "_mp_p")} for c in candidates],
        "command": " ".join([".venv/bin/python", "benchmarks/quantizer_routes.py"] + (argv or sys.argv[1:])),
        "seconds": round(time.time() - t0),
    }
    (out / "quantizer_routes.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print()
    print(tables(report))
    print(f"\nwritten: {out / 'quantizer_routes.json'}, models in {models_dir}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--job":
        run_job(sys.argv[2])
    else:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        main()
