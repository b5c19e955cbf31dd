"""The speed experiment (``experiment=speed``): records, the state accounting, out-of-memory points, the table."""
from __future__ import annotations

import pytest
import torch

from experiments import speed
from experiments.results import run_id
from experiments.tables import rebuild

from .helpers import cli, compose_cfg, records


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speed")
    result = cli(tmp, "experiment=speed", "scale=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, records(tmp, "speed", "smoke")


def test_the_smoke_grid_measures_every_model_three_ways(smoke):
    tmp, recs = smoke
    got = {(r["model"], r["config"]["speed"]["measure"]): r["metrics"]["points"] for r in recs}
    assert set(got) == {(m, s) for m in ("llama", "xlstm_7_1") for s in ("generation", "decoding", "training")}
    for (model, measure), points in got.items():
        key = {"generation": "length", "decoding": "batch", "training": "context"}[measure]
        assert [p[key] for p in points] == {"generation": [2, 6], "decoding": [1, 3], "training": [8, 16]}[measure]
        assert all(p["status"] == "ok" for p in points)
    generation = {m: got[(m, "generation")] for m in ("llama", "xlstm_7_1")}
    assert generation["llama"][0]["seconds"] < generation["llama"][1]["seconds"]  # time accumulates with length
    table = (rebuild("speed", "smoke", tmp / "results") / "table.md").read_text()
    assert "## Generation time" in table and "| xLSTM[7:1] |" in table and "## Training throughput" in table


def test_a_second_record_of_a_measurement_replaces_the_first_in_the_table(smoke, tmp_path):
    """A changed speed setting gives a model's measurement a new run id: the table shows the newest record only."""
    import json
    import shutil

    tmp, recs = smoke
    runs = tmp / "results" / "speed" / "smoke" / "runs"
    copy = tmp_path / "results" / "speed" / "smoke" / "runs"
    shutil.copytree(runs, copy)
    old = next(r for r in recs if r["model"] == "llama" and r["config"]["speed"]["measure"] == "generation")
    newer = json.loads(json.dumps(old))
    newer["run_id"] += "_newer"
    newer["finished_at"] = "9999-01-01T00:00:00+0000"
    for point in newer["metrics"]["points"]:
        point["seconds"] = 1234.5
    (copy / f"{newer['run_id']}.json").write_text(json.dumps(newer))
    table = (rebuild("speed", "smoke", tmp_path / "results") / "table.md").read_text()
    llama_rows = [line for line in table.splitlines() if line.startswith("| Llama |")]
    assert len(llama_rows) == 3  # generation, decoding, training: one row each
    assert "1234.50" in llama_rows[0]


def test_the_kv_cache_grows_with_the_length_and_the_recurrent_state_does_not(smoke):
    _, recs = smoke
    points = {r["model"]: r["metrics"]["points"] for r in recs if r["config"]["speed"]["measure"] == "generation"}
    llama, xl = points["llama"], points["xlstm_7_1"]
    # Llama: (prefill 4 + generated) tokens in the cache of every layer; at 2 and 6 generated: 6 and 10 positions
    assert llama[1]["state_mb"] / llama[0]["state_mb"] == pytest.approx(10 / 6, rel=1e-6)
    assert xl[1]["state_mb"] == xl[0]["state_mb"] > 0


def test_state_bytes_counts_every_tensor_of_a_nested_state():
    state = [(torch.zeros(2, 3), torch.zeros(4, dtype=torch.bfloat16)), {"a": torch.zeros(1, dtype=torch.int64)}, None]
    assert speed.state_bytes(state) == 2 * 3 * 4 + 4 * 2 + 8


def test_out_of_memory_is_a_recorded_point_and_other_errors_stop():
    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert speed._guarded({"batch": 64}, oom) == [{"batch": 64, "status": "oom"}]

    def bug():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        speed._guarded({"batch": 64}, bug)


def test_a_training_run_id_does_not_depend_on_the_speed_settings(tmp_path):
    plain = compose_cfg(tmp_path, "model=lstm", "task=parity")
    changed = compose_cfg(tmp_path, "model=lstm", "task=parity", "speed.lengths=[3]", "speed.measure=decoding")
    assert run_id(plain) == run_id(changed)
    timed = compose_cfg(tmp_path, "model=lstm", "task=parity", "job=speed")
    assert run_id(timed).startswith("speed_generation__lstm__s0__")


def test_bad_speed_settings_are_one_error_line(tmp_path):
    result = cli(tmp_path, "experiment=speed", "scale=smoke", "speed.measure=latency")
    assert result.returncode == 2 and "speed.measure must be generation | decoding | training" in result.stderr
