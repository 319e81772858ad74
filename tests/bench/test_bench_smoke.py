"""The benchmark suite runs end to end on tiny inputs (figures not checked: see bench/)."""

from __future__ import annotations

import json

import pytest


def test_every_benchmark_runs_and_writes_results(tmp_path, monkeypatch, capsys):
    from bench import common, run

    monkeypatch.setattr(common, "OUT_DIR", tmp_path / "out")
    out = tmp_path / "results.json"
    code = run.main(["--quick", "--arch", "tiny", "--peak-archs", "tiny", "--images", "4",
                     "--min-side", "64", "--max-side", "96", "--image-size", "32",
                     "--batch-size", "2", "--memory-records", "8", "--memory-batch-size", "2",
                     "--cam-methods", "gradcam", "--accuracy-images", "24", "--out", str(out)])
    assert code == 0
    document = json.loads(out.read_text())
    assert {"cpu", "cores", "memory_gib", "versions"} <= set(document["machine"])
    names = [entry["name"] for entry in document["results"]]
    assert names == list(run.BENCHMARKS)
    for entry in document["results"]:
        assert not entry["notes"].startswith("failed"), entry["notes"]
        assert entry["ratio"] is not None and entry["ratio"] > 0, entry["name"]
    table = capsys.readouterr().out
    assert "input_pipeline" in table and "memory" in table


def test_analytic_flops_match_tensorflow_profiler():
    from bench.common import build_model
    from bench.flops import forward_flops, profiler_forward_flops

    model = build_model("tiny", 32)
    counted = forward_flops(model)
    # conv1 15x15x8 (3x3x1), conv5 7x7x16 (3x3x8), dense 16x16 and 16x3; 2 FLOPs per MAC
    assert counted == 2 * (15 * 15 * 8 * 9 + 7 * 7 * 16 * 72 + 16 * 16 + 16 * 3)
    assert profiler_forward_flops(model, 32) == pytest.approx(counted, rel=0.05)


def test_table_marks_missed_targets():
    from bench.run import format_table

    table = format_table([{"name": "a", "ratio_name": "x / y", "ratio": 0.5, "target": ">= 1",
                           "met": False, "notes": "n"}])
    assert "NO" in table and "0.5" in table


def test_diagnose_chain_benchmark_runs_and_finds_equal_rows(tmp_path, synthetic_btxrd, capsys):
    """``python -m bench.diagnose_chain`` on a demo-layout folder of tiny models: both arms
    run, their rows agree, the JSON names both figures."""
    pytest.importorskip("keras")
    from helpers import save_bright_segmenter, save_chain_classifier

    from bench import diagnose_chain

    run_dir = tmp_path / "demo"
    save_bright_segmenter(run_dir / "attention-unet" / "model.keras")
    save_chain_classifier(run_dir / "densenet121-multiclass" / "model.keras")
    out = tmp_path / "diagnose_chain.json"
    assert diagnose_chain.main(["--run-dir", str(run_dir), "--data", str(synthetic_btxrd),
                                "--split", "all", "--images", "5", "--chunk-size", "2",
                                "--reps", "1", "--predict-calls", "3", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["results"][0]
    assert [c["cam"] for c in entry["figures"]["chains"]] == ["none", "gradcam++"]
    for chain in entry["figures"]["chains"]:
        assert chain["images"] == 5 and chain["speedup"] > 0
        assert chain["max_abs_difference"] < 1e-5
    assert entry["figures"]["predict"]["speedup"] > 0
    assert entry["figures"]["tta"]["cost"] > 0 and entry["figures"]["tta"]["images"] == 5
    ensemble = entry["figures"]["ensemble"]
    assert ensemble["cost"] > 0 and ensemble["images"] == 5
    assert set(ensemble["times_s"]) == {"two", "one"}
    assert "CAM gradcam++" in capsys.readouterr().out
