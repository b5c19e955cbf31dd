"""The memory studies and state-tracking ablations: ``task_settings`` (one grid over language modelling and MQAR),
what each grid point resolves to, and the tables (divergence shown with its step, never a number)."""
from __future__ import annotations

import pytest

from experiments.config import SuiteError, resolve
from experiments.tables.memory import memory_size, memory_stabilizer, memory_type
from experiments.tables.state_tracking import ablation_state_tracking, parity_diagnosis

from .helpers import ROOT, compose_cfg, grid_points

PAPER = ROOT / "results" / "paper"


def _point(tmp_path, data_dir, *overrides):
    cfg = compose_cfg(tmp_path, *overrides, f"paths.data_dir={data_dir}")
    resolve(cfg, {o.split("=")[0] for o in overrides})
    return cfg


def test_task_settings_follow_the_task_and_yield_to_the_command_line(tmp_path, lm_data_dir):
    lm = _point(tmp_path, lm_data_dir, "experiment=memory_size", "scale=small", "task=lm_local", "model.num_heads=1")
    mqar = _point(tmp_path, lm_data_dir, "experiment=memory_size", "scale=small", "task=mqar", "model.num_heads=8")
    assert (lm.model.embedding_dim, lm.model.num_blocks, lm.model.num_heads) == (128, 4, 1)  # w128, heads swept
    assert (lm.task.context_length, lm.trainer.max_steps, list(lm.optim.betas)) == (256, 400, [0.9, 0.95])
    assert (mqar.model.embedding_dim, mqar.model.num_blocks, mqar.model.num_heads) == (64, 2, 8)
    assert (mqar.task.context_length, mqar.task.num_kv_pairs, mqar.trainer.max_steps) == (128, 16, 1000)
    assert list(mqar.optim.betas) == [0.9, 0.999] and mqar.model.slstm_recurrent_grad_clip == 10.0
    mine = _point(tmp_path, lm_data_dir, "experiment=memory_size", "scale=small", "task=mqar", "model.embedding_dim=32")
    assert mine.model.embedding_dim == 32
    with pytest.raises(SuiteError, match=r"task_settings\['sst\*'\] matches no task"):
        _point(tmp_path, lm_data_dir, "+task_settings={sst*: {seed: 1}}")
    with pytest.raises(SuiteError, match=r"task_settings\['parity'\]: no config key 'model.widht'"):
        _point(tmp_path, lm_data_dir, "+task_settings={parity: {model.widht: 1}}")


def test_memory_grids_vary_only_what_they_study(tmp_path, lm_data_dir):
    heads = grid_points(tmp_path, "memory_size", "small")
    assert heads["model.num_heads"] == ["1", "2", "4", "8"] and heads["task"] == ["lm_local", "mqar"]
    types = grid_points(tmp_path, "memory_type", "small")
    assert types["model"] == ["xlstm_1_0", "xlstm_0_1", "xlstm_1_1"]
    params = {}
    for model in types["model"]:
        cfg = _point(tmp_path, lm_data_dir, "experiment=memory_type", "scale=small", "task=lm_local", f"model={model}")
        assert (cfg.model.embedding_dim, cfg.model.num_blocks) == (128, 4)
        from omegaconf import OmegaConf

        from xlstm.params import count

        fields = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
        params[model] = count(model, **fields)
    assert max(params.values()) / min(params.values()) < 1.02  # "about equal": within 2 %
    stab = grid_points(tmp_path, "memory_stabilizer", "small")
    assert stab["trainer.precision"] == ["32-true", "bf16-mixed"] and len(stab["variant"]) == 5
    for variant in stab["variant"]:
        cfg = _point(tmp_path, lm_data_dir, "experiment=memory_stabilizer", "scale=small", f"variant={variant}")
        assert cfg.model.mlstm_backend == "variant--torch"  # every row through the same arithmetic


@pytest.mark.parametrize("variant, model, gate, mixing", [
    ("slstm", "xlstm_0_1", "exp", True), ("slstm_sigmoid_no_mixing", "xlstm_0_1", "sigmoid", False),
    ("mlstm_sigmoid", "xlstm_1_0", "sigmoid", None)])
def test_state_tracking_rows_set_their_switches(tmp_path, variant, model, gate, mixing):
    cfg = compose_cfg(tmp_path, "experiment=ablation_state_tracking", "scale=small", "task=parity",
                      f"variant=ablation_state_tracking/{variant}")
    resolve(cfg, {"task", "variant"})
    m = cfg.model
    assert m.name == model and m.slstm_conv_kernel == 0 and m.slstm_recurrent_init == "standard"  # the FL recipe
    assert (m.slstm_igate_activation if model == "xlstm_0_1" else m.mlstm_igate_activation) == gate
    if mixing is not None:
        assert m.slstm_memory_mixing is mixing


def _record(experiment, task, model, *, val, test=None, status="finished", lr=1e-3, seed=0, variant=None, steps=10,
            model_cfg=None, trainer=None, params=1000):
    metrics = {"val": val, "test": test or val} if status == "finished" else {}
    return {"run_id": f"{task}{model}{variant}{lr}{seed}", "experiment": experiment, "status": status, "task": task,
            "model": model, "scale": "small", "seed": seed, "lr": lr, "steps": steps, "params": params,
            "hardware": "cpu", "git_commit": "0123456789", "git_dirty": False, "error": None, "metrics": metrics,
            "curve": [{"step": steps, "tokens": 100, "ppl": 5.0}],
            "config": {"variant": variant, "model": {"name": model, "embedding_dim": 64, "num_heads": 4,
                                                     **(model_cfg or {})},
                       "trainer": {"max_steps": steps, "precision": "32-true", **(trainer or {})}, "seed": seed,
                       "optim": {"lr": lr}}}


def test_memory_size_and_type_tables_pick_the_lr_per_task(tmp_path):
    records = [_record("memory_size", "lm_local", "xlstm_1_0", val={"ppl": ppl}, lr=lr, model_cfg={"num_heads": h})
               for h, ppl, lr in ((1, 30.0, 1e-3), (1, 20.0, 3e-3), (4, 25.0, 1e-3))]
    records += [_record("memory_size", "mqar", "xlstm_1_0", val={"acc": 0.9}, model_cfg={"num_heads": 1})]
    md = memory_size(records, PAPER).markdown
    assert "| 1 | 128 | 0.003 | 20.00 | 128 | 0.001 | 0.90 |" in md  # inner 128 = 2 x 64: d_h 128 with one head
    assert "| 4 | 32 | 0.001 | 25.00 |  |  | not run |" in md
    typed = [_record("memory_type", "mqar", m, val={"acc": a}) for m, a in (("xlstm_0_1", 0.2), ("xlstm_1_0", 0.8))]
    md = memory_type(typed, PAPER).markdown
    assert md.index("xLSTM[1:0]") < md.index("xLSTM[0:1]") and "|  |  | not run | 0.001 | 0.001 | 0.80 |" in md


def test_the_stabilizer_table_shows_divergence_with_its_step(tmp_path):
    def rec(variant, precision, **kw):
        cfg = {"mlstm_stabilizer": "none" if "no_stabilizer" in variant else "max", "mlstm_normalizer": "max"}
        return _record("memory_stabilizer", "lm_local", "xlstm_1_0", variant=f"memory_stabilizer/{variant}",
                       model_cfg=cfg, trainer={"precision": precision}, **kw)

    records = [rec("paper", "32-true", val={"ppl": 30.0, "igate_max": 3.25}),
               rec("no_stabilizer", "32-true", val={}, status="diverged", steps=137),
               rec("no_stabilizer", "bf16-mixed", val={"ppl": 31.0, "igate_max": 2.0})]
    artefact = memory_stabilizer(records, PAPER)
    lines = artefact.markdown.splitlines()
    assert "| paper | max | max | 30.00 | 3.2 | not run |  |" in lines
    assert "| no_stabilizer | none | max | diverged at step 137 |  | 31.00 | 2.0 |" in lines
    artefact.figures["curves.png"](tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def _formal(experiment, variant, task, inside, beyond, lr=1e-2, seed=0):
    test = {"acc_scaled": (inside + beyond) / 2, "acc_scaled@16": inside, "acc_scaled@40": inside,
            "acc_scaled@64": beyond, "acc_scaled@256": beyond}
    return _record(experiment, task, "xlstm_1_1", val={"acc_scaled": inside}, test=test, lr=lr, seed=seed,
                   variant=f"{experiment}/{variant}", steps=1000)


def test_parity_diagnosis_separates_inside_and_beyond_the_training_lengths(tmp_path):
    records = [_formal("parity_diagnosis", "default", "parity", 1.0, 0.8, seed=0),
               _formal("parity_diagnosis", "default", "parity", 0.0, 0.0, seed=1),
               _formal("parity_diagnosis", "bias_standard", "parity", 0.0, 0.0)]
    artefact = parity_diagnosis(records, PAPER)
    md = artefact.markdown
    assert "| default | 1000 | 0.01 | 1/2 | 0.50 ± 0.71 | 0.40 ± 0.57 |" in md
    assert "| bias_standard | 1000 | 0.01 | 0/1 | 0.00 | 0.00 |" in md
    artefact.figures["accuracy_by_length.png"](tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_state_tracking_table_has_a_column_per_task(tmp_path):
    records = [_formal("ablation_state_tracking", "slstm", "parity", 1.0, 1.0),
               _formal("ablation_state_tracking", "slstm_no_mixing", "parity", 0.0, 0.0),
               _formal("ablation_state_tracking", "slstm", "modular_arithmetic", 0.3, 0.1)]
    md = ablation_state_tracking(records, PAPER).markdown
    assert "| slstm | xLSTM[0:1] | exp | yes | 0.20 | 1.00 |" in md
    assert "| slstm_no_mixing | xLSTM[0:1] | exp | no | not run | 0.00 |" in md
