"""Comparisons over training seeds: group runs by config, mean ± std over seeds, paired differences.

One training seed can move a model by more than the gap between models (docs/results.md), so every
comparison the project publishes goes through here:

- :func:`group_runs` pools runs whose resolved configs are equal once ``train.seed`` is removed (runs
  that differ in anything else — β, iterations, data — stay apart) into :class:`SeedGroup` objects.
- :func:`compare` pairs two sets of per-seed values **by seed value** and returns a :class:`Comparison`:
  the mean paired difference, a percentile bootstrap interval of that mean over seeds, and in how many
  seeds each side is ahead. It takes run directories, :class:`RunScore` / :class:`SeedGroup` objects, or
  plain ``{seed: value}`` dicts / arrays (an array's position is its seed), so any experiment can use it.
- :func:`write_seed_results` writes ``seeds.md``, ``seeds.csv``, ``pairs.csv`` and ``seeds.json`` next to
  Table 1 when some model was trained with more than one seed (``factorlens evaluate`` calls it).

With n seeds the percentile bootstrap of the mean never leaves [min, max] of the n differences, and
with n = 3 its 95 % interval *is* [min, max] (each resample of three equal draws has probability 1/27 >
2.5 %): the interval excludes zero exactly when all three seeds agree. Read intervals over few seeds as
what these seeds show, not as a population interval.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factorlens.errors import ConfigError, DataError

N_BOOT = 10_000
LEVEL = 0.95
SEED_FILES = ("seeds.md", "seeds.csv", "pairs.csv", "seeds.json")


# --- runs and groups ------------------------------------------------------------------------------------


@dataclass
class RunScore:
    """One evaluated run: its metric values (raw units, as in ``metrics.json``), seed and config."""

    run: str
    model: str
    seed: int | None
    metrics: dict[str, float | None]
    config: dict = field(default_factory=dict)
    row: str = ""
    trained_on: dict | None = None


@dataclass
class SeedGroup:
    """Runs of one config that differ only in ``train.seed``; ``runs`` is keyed by seed."""

    name: str
    model: str
    key: str
    config: dict
    runs: dict[int | None, RunScore]

    @property
    def seeds(self) -> list[int | None]:
        return list(self.runs)

    def values(self, metric: str) -> dict[int | None, float]:
        """``{seed: value}`` of the seeds where ``metric`` has a value."""
        return {s: r.metrics[metric] for s, r in self.runs.items() if r.metrics.get(metric) is not None}


def config_without_seed(config: Mapping) -> dict:
    """The resolved config with ``train.seed`` removed: what runs pooled over seeds must share."""
    stripped = copy.deepcopy(dict(config))
    train = dict(stripped.get("train") or {})
    train.pop("seed", None)
    if "train" in stripped:
        stripped["train"] = train
    return stripped


def group_key(config: Mapping) -> str:
    """A canonical text of :func:`config_without_seed` (equal keys = poolable runs)."""
    return json.dumps(config_without_seed(config), sort_keys=True, default=str)


def group_runs(scores: Iterable[RunScore], row_names: Mapping[str, str] | None = None) -> list[SeedGroup]:
    """Pool runs whose configs differ only in ``train.seed``, in order of first appearance.

    A group is named by its model's paper row name (``row_names``: model -> name); groups of the same
    model are told apart by the options they differ in (``β-TCVAE (model.beta=4)``). Two runs of one
    group with the same seed are an error (the same experiment twice is not two seeds).
    """
    from factorlens.evaluation.table1 import PAPER_ROW_NAMES

    names = PAPER_ROW_NAMES if row_names is None else row_names
    groups: dict[str, SeedGroup] = {}
    for score in scores:
        key = group_key(score.config) if score.config else json.dumps({"model": score.model})
        group = groups.get(key)
        if group is None:
            group = groups[key] = SeedGroup(
                name=names.get(score.model, score.model),
                model=score.model,
                key=key,
                config=config_without_seed(score.config),
                runs={},
            )
        if score.seed in group.runs:
            raise DataError(
                f"runs {group.runs[score.seed].run} and {score.run} have the same config and seed "
                f"{score.seed}; give each seed once"
            )
        group.runs[score.seed] = score
    _tell_apart(list(groups.values()))
    return list(groups.values())


def _flatten(config: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _tell_apart(groups: list[SeedGroup]) -> None:
    by_name: dict[str, list[SeedGroup]] = {}
    for group in groups:
        by_name.setdefault(group.name, []).append(group)
    for same in by_name.values():
        if len(same) < 2:
            continue
        flats = [_flatten(g.config) for g in same]
        keys = sorted(set().union(*flats))
        differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
        for group, flat in zip(same, flats, strict=True):
            group.name += " (" + ", ".join(f"{k}={flat.get(k)}" for k in differing) + ")"


def run_provenance(run) -> dict:
    """What ``metrics.json`` records about a loaded run (:class:`~factorlens.training.Run`) besides its
    scores: ``seed`` and the resolved ``config`` (to pool seeds), and ``trained_on``, the machine record
    of its ``summary.json`` (None for runs trained before it was recorded, or unfinished)."""
    summary = Path(run.path) / "summary.json"
    try:
        trained_on = json.loads(summary.read_text(encoding="utf-8")).get("environment")
    except (OSError, json.JSONDecodeError):
        trained_on = None
    return {"seed": run.config.train.seed, "config": run.config.to_dict(), "trained_on": trained_on}


def _training_machines(groups: Sequence[SeedGroup]) -> list[str]:
    """The distinct training machines of the groups' runs, described in one line each."""
    from factorlens.environment import describe_machine

    seen: list[str] = []
    for group in groups:
        for run in group.runs.values():
            line = describe_machine(run.trained_on) if run.trained_on else "an unrecorded machine"
            if line not in seen:
                seen.append(line)
    return seen


# --- reading metrics.json -------------------------------------------------------------------------------


def _run_config(run: str) -> dict:
    """A run directory's ``config.yaml`` (for metrics.json files written before records had configs)."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def scores_from_metrics(metrics: Mapping | str | Path) -> list[RunScore]:
    """The runs of one ``metrics.json`` (a path, its folder, or the loaded dict) as :class:`RunScore`.

    A record's ``config`` and ``seed`` come from the file (written by ``factorlens evaluate``); older
    files without them fall back on the run directory's ``config.yaml`` when it still exists.
    """
    if not isinstance(metrics, Mapping):
        path = Path(metrics)
        if path.is_dir():
            path = path / "metrics.json"
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path} does not exist (write it with factorlens evaluate)") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from None
    scores = []
    for record in metrics.get("runs", []):
        config = record.get("config") or _run_config(record["run"])
        seed = record.get("seed", (config.get("train") or {}).get("seed"))
        values = {name: cell.get("value") for name, cell in (record.get("metrics") or {}).items()}
        scores.append(
            RunScore(
                run=record["run"],
                model=record.get("model", "?"),
                seed=seed,
                metrics=values,
                config=config,
                row=record.get("row", ""),
                trained_on=record.get("trained_on"),
            )
        )
    return scores


def _find_scores(run: str | Path, results: Sequence[str | Path] | None) -> RunScore:
    """The evaluated scores of a run directory: from the ``metrics.json`` files in ``results``, else
    from ``results/metrics.json`` in the run's parent or grandparent (the layouts ``demo`` writes)."""
    target = Path(run).resolve()
    places = (
        list(results)
        if results is not None
        else [
            parent / "results"
            for parent in target.parents[:2]
            if (parent / "results" / "metrics.json").is_file()
        ]
    )
    for place in places:
        for score in scores_from_metrics(place):
            if Path(score.run).resolve() == target or score.run == str(run):
                return score
    raise DataError(
        f"no metrics.json among {[str(p) for p in places] or 'the run folder parents'} lists run {run}; "
        "evaluate it first (factorlens evaluate) or pass results="
    )


# --- the comparison -------------------------------------------------------------------------------------


def bootstrap_interval(
    differences: Sequence[float] | np.ndarray, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (resampled with replacement).

    The bounds are clipped to [min, max] of the differences, where every resampled mean lies (this
    only removes rounding: a constant difference gives exactly that constant).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or not len(d):
        raise DataError("bootstrap_interval needs at least one difference")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(np.clip(lo, d.min(), d.max())), float(np.clip(hi, d.min(), d.max()))


@dataclass
class Comparison:
    """Paired comparison of ``a`` and ``b`` on one metric over the seeds both have.

    ``differences[i] = a[seeds[i]] - b[seeds[i]]``; ``mean`` and ``interval`` are of the mean
    difference (raw units; multiply by ``scale`` for display). ``a_wins`` / ``b_wins`` / ``ties``
    count seeds. ``resolved``: at least two seeds, and all of them agree or the interval excludes 0.
    """

    metric: str
    a: str
    b: str
    seeds: list
    a_values: list[float]
    b_values: list[float]
    differences: list[float]
    mean: float
    std: float | None
    interval: tuple[float, float]
    level: float
    a_wins: int
    b_wins: int
    ties: int
    label: str = ""
    scale: float = 1.0

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def flips(self) -> bool:
        """The order is not the same in every seed (each side ahead in at least one)."""
        return self.a_wins > 0 and self.b_wins > 0

    @property
    def all_agree(self) -> bool:
        return self.a_wins == self.n or self.b_wins == self.n

    @property
    def excludes_zero(self) -> bool:
        return self.interval[0] > 0 or self.interval[1] < 0

    @property
    def resolved(self) -> bool:
        return self.n >= 2 and (self.all_agree or self.excludes_zero)

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "one seed: not resolved"
        if self.all_agree:
            return f"holds in all {self.n} seeds" if self.n > 2 else "holds in both seeds"
        if self.excludes_zero:
            return "interval excludes 0"
        if self.flips:
            return "order flips between seeds"
        return "tied in some seeds: not resolved"

    def sentence(self, digits: int = 2) -> str:
        """``Ours-Adv > β-TCVAE on MIG_hf in 2 of 3 seeds, difference +1.20 [-3.10, +5.00]`` — oriented so
        that the mean difference is >= 0 (the side ahead on average comes first)."""
        label = self.label or self.metric
        if self.mean >= 0:
            first, second, wins, lo, hi, mean = self.a, self.b, self.a_wins, *self.interval, self.mean
        else:
            first, second, wins = self.b, self.a, self.b_wins
            lo, hi, mean = -self.interval[1], -self.interval[0], -self.mean
        s = self.scale
        text = (
            f"{first} > {second} on {label} in {wins} of {self.n} seed{'s' if self.n != 1 else ''}, "
            f"difference {mean * s:+.{digits}f} [{lo * s:+.{digits}f}, {hi * s:+.{digits}f}]"
        )
        if self.ties:
            text += f", tied in {self.ties}"
        return text

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "label": self.label,
            "a": self.a,
            "b": self.b,
            "seeds": self.seeds,
            "a_values": self.a_values,
            "b_values": self.b_values,
            "differences": self.differences,
            "mean_difference": self.mean,
            "std_difference": self.std,
            "interval": list(self.interval),
            "level": self.level,
            "a_wins": self.a_wins,
            "b_wins": self.b_wins,
            "ties": self.ties,
            "flips": self.flips,
            "resolved": self.resolved,
            "verdict": self.verdict,
            "scale": self.scale,
            "sentence": self.sentence(),
        }


def _per_seed(side, metric: str | None, results) -> tuple[str, dict]:
    """(name, {seed: value}) of one side of :func:`compare`."""
    if isinstance(side, SeedGroup):
        return side.name, _need_metric(metric, side.values)
    if isinstance(side, Mapping):
        return "", {_seed_key(k): float(v) for k, v in side.items() if v is not None}
    if isinstance(side, np.ndarray) or (
        isinstance(side, Sequence)
        and not isinstance(side, str)
        and side
        and all(isinstance(v, (int, float, np.number)) for v in side)
    ):
        return "", {i: float(v) for i, v in enumerate(np.asarray(side, dtype=np.float64).ravel())}
    if isinstance(side, (str, Path)):
        side = [side]
    if isinstance(side, Sequence):
        scores = [s if isinstance(s, RunScore) else _find_scores(s, results) for s in side]
        if metric is None:
            raise ConfigError("compare needs the metric name to read runs")
        groups = group_runs(scores)
        name = " + ".join(g.name for g in groups)
        values: dict = {}
        for score in scores:
            if score.seed in values:
                raise DataError(f"two runs with seed {score.seed} on one side of compare ({score.run})")
            if score.metrics.get(metric) is not None:
                values[score.seed] = float(score.metrics[metric])
        return name, values
    raise ConfigError(
        f"compare takes run directories, RunScore/SeedGroup objects, a {{seed: value}} dict or an array, "
        f"got {type(side).__name__}"
    )


def _need_metric(metric: str | None, values) -> dict:
    if metric is None:
        raise ConfigError("compare needs the metric name to read a SeedGroup")
    return values(metric)


def _seed_order(seed) -> tuple:
    """Integers first, in order; anything else (None, names) after them, by text."""
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def _seed_key(key):
    try:
        return int(key)
    except (TypeError, ValueError):
        return key


def compare(
    runs_a,
    runs_b,
    metric: str | None = None,
    *,
    names: tuple[str, str] | None = None,
    results: Sequence[str | Path] | None = None,
    label: str = "",
    scale: float = 1.0,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Comparison:
    """Compare two sets of runs on one metric, paired by seed value.

    Args:
        runs_a, runs_b: each one of: run directories (their scores are read from the ``metrics.json``
            files in ``results``, by default ``results/metrics.json`` in a run's parent or grandparent);
            :class:`RunScore` objects; a :class:`SeedGroup`; a ``{seed: value}`` dict; an array or list
            of numbers (position = seed).
        metric: the ``metrics.json`` key (``mig_hf``...); needed for runs and groups, a label otherwise.
        names: display names of the two sides (default: the groups' row names, else ``A`` / ``B``).
        label, scale: how the metric is shown in :meth:`Comparison.sentence` (``"MIG_hf %"``, 100).
        n_boot, level, seed: the bootstrap (resamples, interval level, its RNG seed).

    Only seeds present on both sides (with a value) are compared; none in common is an error.
    """
    name_a, a = _per_seed(runs_a, metric, results)
    name_b, b = _per_seed(runs_b, metric, results)
    if names is not None:
        name_a, name_b = names
    seeds = sorted((s for s in a if s in b), key=_seed_order)
    if not seeds:
        raise DataError(
            f"no seed in common between {name_a or 'A'} (seeds {sorted(a, key=str)}) and "
            f"{name_b or 'B'} (seeds {sorted(b, key=str)})"
        )
    av = np.array([a[s] for s in seeds], dtype=np.float64)
    bv = np.array([b[s] for s in seeds], dtype=np.float64)
    d = av - bv
    return Comparison(
        metric=metric or "",
        a=name_a or "A",
        b=name_b or "B",
        seeds=list(seeds),
        a_values=av.tolist(),
        b_values=bv.tolist(),
        differences=d.tolist(),
        mean=float(d.mean()),
        std=float(d.std(ddof=1)) if len(d) > 1 else None,
        interval=bootstrap_interval(d, n_boot=n_boot, level=level, seed=seed),
        level=level,
        a_wins=int((d > 0).sum()),
        b_wins=int((d < 0).sum()),
        ties=int((d == 0).sum()),
        label=label or metric or "",
        scale=scale,
    )


# --- tables over seeds ----------------------------------------------------------------------------------


def summarize(groups: Sequence[SeedGroup], metric: str) -> dict[str, dict]:
    """Per group: n, seeds, per-seed values, mean and std (ddof = 1; None with one seed)."""
    out = {}
    for group in groups:
        values = group.values(metric)
        v = np.array(list(values.values()), dtype=np.float64)
        out[group.name] = {
            "n": len(v),
            "seeds": list(values),
            "values": v.tolist(),
            "mean": float(v.mean()) if len(v) else None,
            "std": float(v.std(ddof=1)) if len(v) > 1 else None,
        }
    return out


def pairwise(
    groups: Sequence[SeedGroup],
    metrics: Sequence[str],
    columns: Mapping[str, dict],
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> list[Comparison]:
    """Every pair of groups (later against earlier, so ``Ours-Adv`` vs ``β-TCVAE``) on every metric
    that both have for at least one common seed."""
    comparisons = []
    for b, a in itertools.combinations(groups, 2):
        for metric in metrics:
            va, vb = a.values(metric), b.values(metric)
            if not set(va) & set(vb):
                continue
            spec = columns.get(metric, {})
            comparisons.append(
                compare(
                    a,
                    b,
                    metric,
                    label=spec.get("column", metric),
                    scale=100.0 if spec.get("percent") else 1.0,
                    n_boot=n_boot,
                    level=level,
                    seed=seed,
                )
            )
    return comparisons


def _metrics_with_values(groups: Sequence[SeedGroup], columns: Mapping[str, dict]) -> list[str]:
    return [m for m in columns if any(g.values(m) for g in groups)]


def _fmt(value: float | None, scale: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * scale:.2f}"


def format_seed_markdown(
    groups: Sequence[SeedGroup],
    comparisons: Sequence[Comparison],
    columns: Mapping[str, dict],
    *,
    machine: str = "",
) -> str:
    """Mean ± std over seeds, the per-seed table, and the paired differences, as Markdown."""
    metrics = _metrics_with_values(groups, columns)
    scale = {m: 100.0 if columns[m].get("percent") else 1.0 for m in metrics}
    header = "| Model | seeds | " + " | ".join(columns[m]["column"] for m in metrics) + " |"
    rule = "| --- | --- | " + " | ".join("---:" for _ in metrics) + " |"
    lines = ["Mean ± std over training seeds (std with ddof = 1):", "", header, rule]
    stats = {m: summarize(groups, m) for m in metrics}
    for g in groups:
        cells = []
        for m in metrics:
            s = stats[m][g.name]
            cell = _fmt(s["mean"], scale[m])
            if s["std"] is not None:
                cell += f" ± {s['std'] * scale[m]:.2f}"
            cells.append(cell)
        seeds = ",".join(str(s) for s in g.seeds)
        lines.append(f"| {g.name} | {seeds} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed:", "", header.replace("| seeds |", "| seed |"), rule]
    for g in groups:
        for s, run in g.runs.items():
            cells = [_fmt(run.metrics.get(m), scale[m]) for m in metrics]
            lines.append(f"| {g.name} | {s} | " + " | ".join(cells) + " |")
    if comparisons:
        level = int(round(comparisons[0].level * 100))
        lines += [
            "",
            f"Paired differences (same seed; mean difference, {level} % bootstrap interval over seeds, "
            "seeds in which the order holds). Orderings are stated only where all seeds agree or the "
            "interval excludes 0:",
            "",
            "| comparison | verdict |",
            "| --- | --- |",
        ]
        lines += [f"| {c.sentence()} | {c.verdict} |" for c in comparisons]
    if machine:
        lines += ["", f"Machine: {machine}."]
    return "\n".join(lines) + "\n"


def format_seed_csv(groups: Sequence[SeedGroup], columns: Mapping[str, dict]) -> str:
    """One line per run (``seed`` = its seed) then per group a ``mean`` and a ``std`` line; display units."""
    metrics = _metrics_with_values(groups, columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Model", "seed", "run", *(columns[m]["column"] for m in metrics)])
    stats = {m: summarize(groups, m) for m in metrics}
    for g in groups:
        scale = {m: 100.0 if columns[m].get("percent") else 1.0 for m in metrics}
        for s, run in g.runs.items():
            writer.writerow([g.name, s, run.run, *(_csv(run.metrics.get(m), scale[m]) for m in metrics)])
        for what in ("mean", "std"):
            writer.writerow([g.name, what, "", *(_csv(stats[m][g.name][what], scale[m]) for m in metrics)])
    return buffer.getvalue()


def _csv(value: float | None, scale: float) -> str:
    return "n/a" if value is None else f"{value * scale:.4f}"


def format_pairs_csv(comparisons: Sequence[Comparison]) -> str:
    """One line per pair and metric: differences are ``a - b`` in display units."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "a",
            "b",
            "metric",
            "n_seeds",
            "seeds",
            "mean_difference",
            "ci_low",
            "ci_high",
            "a_wins",
            "b_wins",
            "ties",
            "verdict",
        ]
    )
    for c in comparisons:
        s = c.scale
        writer.writerow(
            [
                c.a,
                c.b,
                c.label,
                c.n,
                " ".join(map(str, c.seeds)),
                f"{c.mean * s:.4f}",
                f"{c.interval[0] * s:.4f}",
                f"{c.interval[1] * s:.4f}",
                c.a_wins,
                c.b_wins,
                c.ties,
                c.verdict,
            ]
        )
    return buffer.getvalue()


def has_seeds(groups: Sequence[SeedGroup]) -> bool:
    """Whether some group pools more than one seed (then the seed tables are written)."""
    return any(len(g.runs) > 1 for g in groups)


def seed_results(metrics: Mapping, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict:
    """Groups, summaries and pairwise comparisons of one loaded ``metrics.json`` (what ``seeds.json``
    holds) plus the objects to format them: ``{"groups", "comparisons", "json"}``."""
    columns = metrics.get("columns", {})
    groups = group_runs(scores_from_metrics(metrics))
    names = _metrics_with_values(groups, columns)
    comparisons = pairwise(groups, names, columns, n_boot=n_boot, level=level, seed=seed)
    data = {
        "definition": (
            "runs are pooled when their resolved configs are equal without train.seed; std over seeds "
            f"with ddof = 1; paired differences a - b over common seeds; {int(level * 100)} % percentile "
            f"bootstrap ({n_boot} resamples, rng seed {seed}) of the mean difference"
        ),
        "environment": metrics.get("environment"),
        "columns": {m: columns[m] for m in names},
        "groups": [
            {
                "name": g.name,
                "model": g.model,
                "config_without_seed": g.config,
                "seeds": g.seeds,
                "runs": {str(s): r.run for s, r in g.runs.items()},
                "metrics": {m: summarize([g], m)[g.name] for m in names},
            }
            for g in groups
        ],
        "pairs": [c.to_dict() for c in comparisons],
    }
    return {"groups": groups, "comparisons": comparisons, "json": data}


def write_seed_results(out_dir: str | Path, metrics: Mapping) -> str:
    """Write ``seeds.md``, ``seeds.csv``, ``pairs.csv`` and ``seeds.json`` into ``out_dir`` when some
    model of ``metrics`` (a loaded ``metrics.json``) has more than one seed; returns the Markdown. Else
    returns "" and removes seed files an earlier evaluation left there (they would describe other runs)."""
    from factorlens.environment import describe_machine
    from factorlens.io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    result = seed_results(metrics)
    groups = result["groups"]
    if not has_seeds(groups):
        for name in SEED_FILES:
            (out / name).unlink(missing_ok=True)
        return ""
    columns = metrics.get("columns", {})
    machines = _training_machines(groups)
    machine = "; ".join(f"trained on {m}" for m in machines)
    if metrics.get("environment"):
        machine += ("; " if machine else "") + f"evaluated on {describe_machine(metrics['environment'])}"
    markdown = format_seed_markdown(groups, result["comparisons"], columns, machine=machine)
    atomic_write_text(out / "seeds.md", markdown)
    atomic_write_text(out / "seeds.csv", format_seed_csv(groups, columns))
    atomic_write_text(out / "pairs.csv", format_pairs_csv(result["comparisons"]))
    atomic_write_json(out / "seeds.json", result["json"])
    return markdown
