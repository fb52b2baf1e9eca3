"""precision: auto, the machine record and the early estimate held against a recipe's promise."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from conftest import TINY_TRAIN_OVERRIDES
from segdil import machine
from segdil.engine import precision as precision_module
from segdil.engine.pace import pace_verdict, slow_reasons
from segdil.engine.precision import Precision, choose_precision
from segdil.engine.trainer import Trainer
from segdil.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def fake_cpu(monkeypatch, bf16: bool, amx: bool = False, capability: str = "AVX512") -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


@pytest.mark.parametrize(
    ("bf16", "amx", "capability", "chosen", "cpu_class"),
    [
        (True, False, "AVX512", "bf16", "AVX512-BF16"),
        (True, True, "AVX512", "bf16", "AMX"),
        (False, False, "AVX512", "32", "AVX512"),
        (False, False, "AVX2", "32", "AVX2"),
        (True, False, "AVX2", "32", "AVX2"),  # ATEN_CPU_CAPABILITY=avx2 on an AVX512-BF16 CPU
    ],
)
def test_auto_on_a_cpu_takes_bf16_only_where_it_is_native(monkeypatch, bf16, amx, capability, chosen, cpu_class) -> None:
    fake_cpu(monkeypatch, bf16, amx, capability)
    choice = choose_precision("auto", CPU)
    assert choice.name == chosen and choice.requested == "auto" and choice.reason.startswith("auto: ")
    assert machine.cpu_class() == cpu_class


def test_onednn_capped_below_bf16_counts_as_no_native_bf16(monkeypatch) -> None:
    fake_cpu(monkeypatch, bf16=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert choose_precision("auto", CPU).name == "32" and machine.cpu_class() == "AVX512"


@pytest.mark.parametrize(("supported", "chosen"), [(True, "bf16"), (False, "16")])
def test_auto_on_cuda_takes_bf16_or_fp16_with_loss_scaling(monkeypatch, supported, chosen) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    assert choose_precision("auto", CUDA).name == chosen
    assert precision_module.grad_scaler(chosen, CPU).is_enabled() == (chosen == "16")


def test_forced_bf16_on_an_emulating_cpu_runs_with_one_warning(monkeypatch, caplog) -> None:
    fake_cpu(monkeypatch, bf16=False, capability="AVX2")
    with caplog.at_level(logging.WARNING):
        choice = choose_precision("bf16", CPU)
    assert choice.name == "bf16"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "emulated here and runs several times (8-30x) slower than fp32" in warnings[0]
    caplog.clear()
    fake_cpu(monkeypatch, bf16=True)
    with caplog.at_level(logging.WARNING):
        assert choose_precision("bf16", CPU).name == "bf16"
    assert not caplog.records


def test_bad_precisions_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="eval.precision=8: expected auto, 32, bf16 or 16"):
        choose_precision("8", CPU, "eval.precision")
    with pytest.raises(ConfigError, match="trainer.precision=16 needs CUDA"):
        choose_precision(16, CPU)


def test_metrics_json_records_the_machine_and_the_precision_choice(compose, tmp_path, monkeypatch) -> None:
    fake_cpu(monkeypatch, bf16=False, capability="AVX2")
    cfg = compose("train", [*TINY_TRAIN_OVERRIDES, "trainer.max_iters=1", "trainer.val_every=1"])
    Trainer(cfg, tmp_path).fit()
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["precision"] == {"name": "32", "requested": "auto", "reason": choose_precision("auto", CPU).reason}
    assert set(record["machine"]) == {"cpu_model", "cpu_class", "cpu_native_bf16", "cpu_count", "torch_threads", "torch_version", "gpu"}
    assert record["machine"]["cpu_class"] == "AVX2" and record["machine"]["cpu_native_bf16"] is False
    assert record["machine"]["torch_version"] == torch.__version__ and record["machine"]["gpu"] is None


def test_the_early_estimate_warns_against_the_recipes_minutes_with_the_reason(compose, tmp_path, monkeypatch, caplog) -> None:
    """Forced bf16 on an emulating CPU, against a recipe that promises 0.001 minutes: the warning
    comes after the third step and names the emulation."""
    fake_cpu(monkeypatch, bf16=False, capability="AVX2")
    overrides = [*TINY_TRAIN_OVERRIDES, "trainer.max_iters=5", "trainer.val_every=100", "trainer.precision=bf16",
                 "trainer.expected_minutes={AVX2: 0.001}"]
    cfg = compose("train", overrides)
    with caplog.at_level(logging.INFO):
        Trainer(cfg, tmp_path).fit()
    messages = [r.getMessage() for r in caplog.records]
    estimate = next(i for i, m in enumerate(messages) if m.startswith("step time "))
    assert "(median of the first 3)" in messages[estimate]
    verdict = messages[estimate + 1]
    assert verdict.startswith("this run will take about") and "on AVX2. Likely: bf16 is emulated on this CPU" in verdict


def test_pace_verdict_within_over_and_unlisted() -> None:
    reasons = slow_reasons(Precision("32", "auto", ""), {"cpu_native_bf16": False, "cpu_count": 2, "torch_threads": 1}, 1.5, False)
    assert reasons == ["torch uses 1 of 2 cores (OMP_NUM_THREADS or torch.set_num_threads)",
                       "other work shares the CPU (load average 1.50 at the start, 2 cores)"]
    assert pace_verdict(70, {"AVX2": 55}, "AVX2", reasons) == (False, "estimated 70 min of steps against the recipe's 55 min on AVX2 (1.3x, within the 1.5x tolerated)")
    slow, line = pace_verdict(90, {"AVX2": 55}, "AVX2", [])
    assert slow and "1.6x the recipe's 55 min on AVX2. Likely: no cause found" in line
    slow, line = pace_verdict(90, {"AVX2": 55}, "AVX512", [])
    assert not slow and line.endswith("the recipe expects AVX2 55 min, nothing for AVX512")
