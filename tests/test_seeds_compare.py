"""Seeds as a dimension: grouping runs over seeds, mean ± std, paired bootstrap comparisons (fl.compare),
the seed tables evaluate writes, --seeds on train/demo, and the machine record."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_evaluate import TinyVAE

import factorlens as fl
from factorlens.environment import cpu_model, describe_machine, machine_record, onednn_version
from factorlens.errors import ConfigError, DataError
from factorlens.evaluation.compare import (
    bootstrap_interval,
    compare,
    group_runs,
    scores_from_metrics,
    seed_results,
    summarize,
    write_seed_results,
)
from factorlens.models import MODELS, ModelEntry
from factorlens.seeds import parse_seeds, seed_run_dir

COLUMNS = {"mig_hf": {"column": "MIG_hf %", "percent": True}, "psnr": {"column": "PSNR dB", "percent": False}}

# Hand-made per-seed values: model -> (mig_hf per seed 0, 1, 2; psnr per seed)
VALUES = {
    "btcvae": ([0.0614, 0.0904, 0.0712], [26.04, 25.91, 26.10]),
    "btcvae-adv": ([0.1037, 0.0805, 0.0950], [25.96, 25.80, 26.00]),
}


def config(model: str, seed: int, beta: float = 6.0) -> dict:
    return {
        "model": {"name": model, "network": "conv", "beta": beta},
        "train": {"iterations": 1000, "seed": seed, "lr": 0.001},
        "data": {"spec": "synthetic-lesions", "split_seed": 0},
    }


def record(model: str, seed: int, mig_hf: float | None, psnr: float, *, beta: float = 6.0) -> dict:
    return {
        "run": f"runs/x/{model}/seed-{seed}",
        "model": model,
        "seed": seed,
        "config": config(model, seed, beta),
        "metrics": {"mig_hf": {"value": mig_hf}, "psnr": {"value": psnr}},
    }


def hand_made(tmp_path, records: list[dict]):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"columns": COLUMNS, "runs": records}), encoding="utf-8")
    return path


def three_seeds() -> list[dict]:
    return [record(m, s, VALUES[m][0][s], VALUES[m][1][s]) for m in VALUES for s in range(3)]


def test_mean_and_std_over_seeds_equal_numpy_on_hand_made_metrics_json(tmp_path):
    path = hand_made(tmp_path, three_seeds())
    groups = group_runs(scores_from_metrics(path))
    assert [g.name for g in groups] == ["β-TCVAE", "Ours-Adv"] and [g.seeds for g in groups] == [
        [0, 1, 2]
    ] * 2
    for metric, index in (("mig_hf", 0), ("psnr", 1)):
        stats = summarize(groups, metric)
        for group in groups:
            values = np.array(VALUES[group.model][index])
            assert stats[group.name]["mean"] == pytest.approx(values.mean(), abs=1e-15)
            assert stats[group.name]["std"] == pytest.approx(values.std(ddof=1), abs=1e-15)
    # The files evaluate writes say the same, in display units (percent for MIG_hf).
    markdown = write_seed_results(tmp_path, json.loads(path.read_text(encoding="utf-8")))
    adv = np.array(VALUES["btcvae-adv"][0]) * 100
    assert f"| Ours-Adv | 0,1,2 | {adv.mean():.2f} ± {adv.std(ddof=1):.2f} |" in markdown
    assert markdown == (tmp_path / "seeds.md").read_text(encoding="utf-8")
    with (tmp_path / "seeds.csv").open(encoding="utf-8") as handle:
        rows = {(r["Model"], r["seed"]): r for r in csv.DictReader(handle)}
    assert float(rows[("Ours-Adv", "mean")]["MIG_hf %"]) == pytest.approx(adv.mean(), abs=1e-4)
    assert float(rows[("Ours-Adv", "std")]["MIG_hf %"]) == pytest.approx(adv.std(ddof=1), abs=1e-4)
    assert float(rows[("β-TCVAE", "1")]["PSNR dB"]) == pytest.approx(25.91, abs=1e-4)
    seeds_json = json.loads((tmp_path / "seeds.json").read_text(encoding="utf-8"))
    assert seeds_json["groups"][1]["metrics"]["psnr"]["values"] == VALUES["btcvae-adv"][1]
    (pair,) = [p for p in seeds_json["pairs"] if p["metric"] == "psnr"]
    assert (pair["a"], pair["b"]) == ("Ours-Adv", "β-TCVAE")
    expected = np.array(VALUES["btcvae-adv"][1]) - np.array(VALUES["btcvae"][1])
    assert pair["differences"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert pair["mean_difference"] == pytest.approx(expected.mean(), abs=1e-12)


def test_bootstrap_interval_of_a_constant_difference_is_that_constant():
    assert bootstrap_interval([0.3] * 5) == (0.3, 0.3)
    result = compare({0: 1.75, 1: 2.5, 2: -0.25}, {0: 1.25, 1: 2.0, 2: -0.75}, "m")
    assert result.differences == [0.5, 0.5, 0.5]
    assert result.interval == (0.5, 0.5) and result.mean == 0.5 and result.std == 0.0
    assert result.resolved and result.verdict == "holds in all 3 seeds"


def test_bootstrap_interval_matches_the_resampled_means():
    d = np.array([0.1, -0.4, 0.9, 0.3, 0.2])
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, 5, size=(10_000, 5))].mean(axis=1)
    assert bootstrap_interval(d) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-15)
    # With three seeds the 95 % interval is [min, max]: each all-equal resample has probability 1/27 > 2.5 %.
    assert bootstrap_interval([2.0, -1.0, 1.0]) == (-1.0, 2.0)


def test_a_pair_whose_order_flips_between_seeds_is_reported_as_such():
    result = compare(
        {0: 1.0, 1: 3.0, 2: 5.0}, {0: 2.0, 1: 1.0, 2: 4.0}, "MIG_hf", names=("Ours-Adv", "β-TCVAE")
    )
    assert (result.a_wins, result.b_wins, result.ties) == (2, 1, 0)
    assert result.flips and not result.resolved and result.verdict == "order flips between seeds"
    assert (
        result.sentence() == "Ours-Adv > β-TCVAE on MIG_hf in 2 of 3 seeds, difference +0.67 [-1.00, +2.00]"
    )
    # Oriented by the mean: the side ahead on average is named first, with a positive difference.
    assert compare({0: 0.0, 1: 0.0}, {0: 3.0, 1: -1.0}, "m", names=("A", "B")).sentence() == (
        "B > A on m in 1 of 2 seeds, difference +1.00 [-1.00, +3.00]"
    )


def test_flipping_pair_in_the_written_tables(tmp_path):
    records = three_seeds()
    records[4]["metrics"]["mig_hf"]["value"] = 0.01  # Ours-Adv seed 1 now below β-TCVAE seed 1 (0.0904)
    markdown = write_seed_results(tmp_path, {"columns": COLUMNS, "runs": records})
    # Differences +4.23, -8.04, +2.38 points: β-TCVAE ahead on average, in one seed of three.
    assert (
        "| β-TCVAE > Ours-Adv on MIG_hf % in 1 of 3 seeds, difference +0.48 [-4.23, +8.04] "
        "| order flips between seeds |" in markdown
    )
    with (tmp_path / "pairs.csv").open(encoding="utf-8") as handle:
        (row,) = [r for r in csv.DictReader(handle) if r["metric"] == "MIG_hf %"]
    assert (row["a_wins"], row["b_wins"], row["verdict"]) == ("2", "1", "order flips between seeds")
    assert float(row["ci_low"]) == pytest.approx(100 * (0.01 - 0.0904), abs=1e-4)


def test_pairs_by_seed_value_not_position():
    result = compare({5: 1.0, 0: 2.0, 2: 9.0}, {0: 1.5, 3: 0.0, 5: 0.5}, "m")
    assert result.seeds == [0, 5] and result.differences == [0.5, 0.5]
    with pytest.raises(DataError, match="no seed in common"):
        compare({0: 1.0}, {1: 1.0}, "m")
    # Arrays pair by position (position = seed).
    assert compare(np.array([1.0, 2.0]), [0.5, 1.0], "m").differences == [0.5, 1.0]


def test_grouping_ignores_the_seed_and_nothing_else(tmp_path):
    records = three_seeds()[:3] + [record("btcvae", s, 0.05 + s / 100, 26.0, beta=4.0) for s in range(2)]
    records.append(record("btcvae", 2, 0.07, 26.0))
    records[-1]["config"]["train"]["iterations"] = 2000  # another run length: not pooled either
    groups = group_runs(scores_from_metrics(hand_made(tmp_path, records)))
    assert [(g.name, g.seeds) for g in groups] == [
        ("β-TCVAE (model.beta=6.0, train.iterations=1000)", [0, 1, 2]),
        ("β-TCVAE (model.beta=4.0, train.iterations=1000)", [0, 1]),
        ("β-TCVAE (model.beta=6.0, train.iterations=2000)", [2]),
    ]
    assert "seed" not in groups[0].config["train"] and groups[0].config["train"]["lr"] == 0.001
    with pytest.raises(DataError, match="same config and seed 0"):
        group_runs(scores_from_metrics(hand_made(tmp_path, three_seeds() + [three_seeds()[0]])))


def test_single_seed_evaluations_write_no_seed_tables_and_remove_stale_ones(tmp_path):
    write_seed_results(tmp_path, {"columns": COLUMNS, "runs": three_seeds()})
    assert (tmp_path / "seeds.md").exists()
    one_seed = [r for r in three_seeds() if r["seed"] == 0]
    assert write_seed_results(tmp_path, {"columns": COLUMNS, "runs": one_seed}) == ""
    assert not any(
        (tmp_path / name).exists() for name in ("seeds.md", "seeds.csv", "pairs.csv", "seeds.json")
    )
    # Pairs with one common seed are listed but never resolved.
    (pair,) = [
        c for c in seed_results({"columns": COLUMNS, "runs": one_seed})["comparisons"] if c.metric == "psnr"
    ]
    assert pair.n == 1 and not pair.resolved and pair.verdict == "one seed: not resolved"


def test_compare_reads_run_directories_through_metrics_json(tmp_path):
    path = hand_made(tmp_path, three_seeds())
    adv = [f"runs/x/btcvae-adv/seed-{s}" for s in range(3)]
    base = [f"runs/x/btcvae/seed-{s}" for s in range(3)]
    result = fl.compare(adv, base, "mig_hf", results=[path])
    assert (result.a, result.b) == ("Ours-Adv", "β-TCVAE")
    assert result.differences == pytest.approx(
        (np.array(VALUES["btcvae-adv"][0]) - VALUES["btcvae"][0]).tolist()
    )
    groups = group_runs(scores_from_metrics(path))
    assert fl.compare(groups[1], groups[0], "mig_hf").differences == result.differences
    with pytest.raises(DataError, match="lists run"):
        fl.compare(["runs/other/seed-0"], base, "mig_hf", results=[path])
    with pytest.raises(ConfigError, match="metric name"):
        fl.compare(groups[1], groups[0])
    # Without results=: the demo layout, OUT/results/metrics.json above OUT/<model>/seed-<s>.
    records = three_seeds()
    for r in records:
        r["run"] = str(tmp_path / "demo" / r["run"].removeprefix("runs/x/"))
    (tmp_path / "demo" / "results").mkdir(parents=True)
    hand_made(tmp_path / "demo" / "results", records)
    found = fl.compare([tmp_path / "demo" / "btcvae-adv" / f"seed-{s}" for s in range(3)],
                       [tmp_path / "demo" / "btcvae" / f"seed-{s}" for s in range(3)], "mig_hf")
    assert found.differences == result.differences


def test_parse_seeds_and_layout(tmp_path):
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    for bad, message in (("", "empty"), ("0,x", "integers"), ("1,1", "repeats seed 1"), ("-1", ">= 0")):
        with pytest.raises(ConfigError, match=message):
            parse_seeds(bad)
    assert seed_run_dir(tmp_path, "vae", 3) == tmp_path / "vae" / "seed-3"


def test_machine_record_names_cpu_libraries_and_precision():
    assert onednn_version("  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80af)") == "3.12.0"
    assert onednn_version("  - oneDNN v3.7.1 (Git Hash x)") == "3.7.1"
    assert onednn_version("no such line") is None
    cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n\n"
    cpuinfo += "processor\t: 1\nmodel name\t: other\n"
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Platinum 8488C"
    record = machine_record("bf16")
    assert record["torch"] == torch.__version__ and record["numpy"] == np.__version__
    assert record["precision"] == "bf16" and record["cpu_model"] == cpu_model()
    assert record["onednn"] == onednn_version(torch.__config__.show())
    line = describe_machine(record)
    assert (
        line.startswith(record["cpu_model"])
        and f"torch {torch.__version__}" in line
        and line.endswith("bf16")
    )


@dataclass(frozen=True)
class TinyPresetConfig:  # accepts the cpu presets' model options (the demo reads them)
    latent_dim: int = 3
    beta: float = 6.0


@pytest.fixture()
def tiny_model(monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")
    entry = ModelEntry(TinyPresetConfig, lambda config, channels: TinyVAE(channels=channels), "test model")
    with MODELS.override("btcvae", entry), MODELS.override("btcvae-adv", entry):
        yield


def test_train_seeds_writes_one_resumable_run_per_seed_and_results_pool_them(tiny_model, tmp_path, capsys):
    from factorlens.cli.main import main
    from factorlens.evaluation import (
        METRICS,
        TABLE_ORDER,
        EvaluationOptions,
        MetricValue,
        TableRow,
        write_results,
    )
    from factorlens.evaluation.compare import run_provenance

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "model: {name: btcvae}\ndata: {spec: 'synthetic-lesions:n=300'}\n"
        "train: {iterations: 4, batch_size: 16, log_every: 2, checkpoint_every: 4, num_threads: 1}\n",
        encoding="utf-8",
    )
    out = tmp_path / "runs"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--seeds", "0,1"]) == 0
    runs = [out / "btcvae" / "seed-0", out / "btcvae" / "seed-1"]
    for seed, run in enumerate(runs):
        assert fl.load_run(run).config.train.seed == seed
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        assert (
            summary["environment"]["torch"] == torch.__version__
            and summary["environment"]["precision"] == "fp32"
        )
    # Each is a normal run: --resume with more iterations continues both.
    assert (
        main(["train", "--config", str(cfg), "--out", str(out), "--seeds", "0,1", "--resume", "--iters", "6"])
        == 0
    )
    assert [fl.load_run(r).iteration for r in runs] == [6, 6]
    assert main(["train", "--config", str(cfg), "--out", str(out), "--seeds", "0", "--seed", "1"]) == 2
    # What evaluate_runs hands to write_results for these runs (the metrics themselves are tested elsewhere).
    psnr = [24.5, 25.25]
    rows, records = [], []
    for run, value in zip(runs, psnr, strict=True):
        metrics = {name: MetricValue(None, reason="not computed here") for name in TABLE_ORDER}
        metrics["psnr"] = MetricValue(value, estimator="test")
        rows.append(TableRow(row_name="", model_name="btcvae", run=str(run), metrics=metrics))
        records.append(
            {
                "run": str(run),
                "model": "btcvae",
                **run_provenance(fl.load_run(run)),
                "data": {"evaluated_on": "test images"},
            }
        )
    markdown = write_results(tmp_path / "res", rows, records, options=EvaluationOptions(), data_spec=None)
    metrics = json.loads((tmp_path / "res" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["environment"]["cpu_model"] == cpu_model()
    assert [r["seed"] for r in metrics["runs"]] == [0, 1] and metrics["runs"][0]["config"]["train"][
        "seed"
    ] == 0
    assert metrics["runs"][0]["trained_on"]["torch"] == torch.__version__
    seeds_md = (tmp_path / "res" / "seeds.md").read_text(encoding="utf-8")
    assert markdown.endswith(seeds_md) and "| β-TCVAE | 0,1 | 24.88 ± 0.53 |" in seeds_md
    assert f"Machine: trained on {describe_machine(metrics['runs'][0]['trained_on'])}" in seeds_md
    (group,) = json.loads((tmp_path / "res" / "seeds.json").read_text(encoding="utf-8"))["groups"]
    assert group["metrics"]["psnr"]["mean"] == np.mean(psnr) and "psnr" in METRICS


def test_demo_seeds_layout(tiny_model, tmp_path):
    from factorlens.cli.demo import train_demo_runs

    runs = train_demo_runs(
        tmp_path, ["btcvae", "btcvae-adv"], data="synthetic-lesions:n=300", iters=2, force=False, seeds=[3, 1]
    )
    assert runs == [tmp_path / m / f"seed-{s}" for s in (3, 1) for m in ("btcvae", "btcvae-adv")]
    assert [fl.load_run(r).config.train.seed for r in runs] == [3, 3, 1, 1]
    single = train_demo_runs(
        tmp_path / "one", ["btcvae"], data="synthetic-lesions:n=300", iters=2, force=False
    )
    assert single == [tmp_path / "one" / "btcvae"]


def test_report_sections_dot_plot_per_metric_and_machines(tmp_path):
    import re

    from factorlens.viz.seed_plots import dot_plot_svg, report_sections

    metrics = {"columns": COLUMNS, "runs": three_seeds(), "environment": machine_record("fp32")}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    write_seed_results(tmp_path, metrics)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"environment": machine_record("bf16")}), encoding="utf-8")
    sections = report_sections(tmp_path, [run])
    assert [anchor for anchor, _, _ in sections] == ["seeds", "machines"]
    seeds_section, machines_section = sections[0][2], sections[1][2]
    assert seeds_section.count("<svg") == 2 and seeds_section.count("<circle") == 12  # 2 metrics x 6 runs
    assert "Ours-Adv, seed 1: 8.05</title>" in seeds_section  # percent metric shown in points
    assert describe_machine(machine_record("bf16")) in machines_section
    assert f"evaluated</td><td>{tmp_path}" in machines_section
    # The mean bar sits at the mean of the dots, on the same axis.
    svg = dot_plot_svg([("A", {0: 1.0, 1: 3.0}), ("B", {0: 2.0})], "m")
    dots = [float(v) for v in re.findall(r'<circle cx="([0-9.]+)"', svg)]
    bar = float(re.search(r'<line x1="([0-9.]+)"[^>]* stroke="#1f77b4"', svg)[1])
    assert bar == pytest.approx((dots[0] + dots[1]) / 2, abs=0.11) and dots[2] == pytest.approx(bar, abs=0.11)
    # Without seed tables only the machines section is added.
    assert [a for a, _, _ in report_sections(None, [run])] == ["machines"]


def test_demo_closing_note_says_one_seed_and_where_the_seed_table_is(tmp_path):
    from factorlens.cli.demo import closing_note
    from factorlens.environment import machine_line

    one = closing_note(tmp_path, None)
    assert "ONE training seed's" in one and "factorlens demo --seeds 0,1,2 --out runs/demo3" in one
    assert machine_line() in one and machine_line().startswith("machine: " + cpu_model())
    assert closing_note(tmp_path, [0]) == one
    assert closing_note(tmp_path, [0, 1, 2]).startswith(f"over 3 seeds: {tmp_path / 'seeds.md'} (mean ± std")
