"""Distributed training paths, each in a fresh process (device and cluster setup is per process).

mirrored: two logical CPU devices stand in for two GPUs. multiworker: two worker processes on 127.0.0.1
with TF_CONFIG, as on a real cluster; only the chief writes the run directory.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, json
from melkit.util.tf import tf
if sys.argv[3] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[4])
from conftest import short_recipe
from melkit.train.trainer import TrainOptions, run_train
# one epoch per stage: what is tested is the strategy (replicas, one writer), not what the model learns
r = run_train(TrainOptions(data=sys.argv[1], out=sys.argv[2], recipe=short_recipe(1), weights=None, strategy=sys.argv[3],
                       n_boot=50))
print("RESULT", json.dumps({"replicas": r.config.training["replicas"], "auc": r.metrics["test"]["auc"]}))
"""


def _run(args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, **kw)


def _result(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def test_mirrored_on_two_logical_cpus(synth_dir, tmp_path):
    res = _result(_run([synth_dir, tmp_path / "run", "mirrored", REPO / "tests"]))
    assert res["replicas"] == 2 and res["auc"] is not None
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["training"]["strategy"] == "mirrored"


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_two_processes_on_localhost(synth_dir, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        procs.append(_run([synth_dir, tmp_path / "run", "multiworker", REPO / "tests"],
                          env={"TF_CONFIG": json.dumps(tf_config)}))
    try:
        results = [_result(p) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["auc"] == pytest.approx(results[1]["auc"])  # both workers trained the same model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # only the chief wrote, once
    assert (tmp_path / "run" / "model.keras").exists()


def test_multiworker_without_tf_config_is_bad_usage(synth_dir, tmp_path):
    from melkit.train.distribute import make_strategy
    from melkit.util.errors import BadInputError

    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    if "TF_CONFIG" in os.environ:
        pytest.skip("TF_CONFIG set in this environment")
    with pytest.raises(BadInputError, match="TF_CONFIG"):
        make_strategy("multiworker")
