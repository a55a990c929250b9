"""Benchmark of batch identity resolution on a generated, labelled world.

    python -m customers.identity.bench --records 100000 --records 1000000 --seed 2 --seed 3
    python -m customers.identity.bench --records 100000 --splink --write docs/benchmarks.md

For each size: time to generate, train (EM), block, compare, score and cluster; candidate
pairs; peak RSS; pairwise precision / recall / F1 against the truth, next to the
deterministic baseline (exact e-mail / phone / tax id / national id linking); and the
ingest-path latency of ``score_candidates`` (one record against its candidates). With
``--splink``, plain Splink 5 on DuckDB runs on the same records for comparison.
``--write`` replaces the "Identity resolution" section of a Markdown file (other sections
are kept).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .batch import peak_rss_mb, resolve_population
from .blocking import block, shared_key_guard
from .evaluation import deterministic_baseline, generate_world, pairwise_metrics
from .model import IdentityModel, prepare

SECTION = "## Identity resolution"


def _latency(
    model: IdentityModel, records: list[dict[str, Any]], *, queries: int = 200, seed: int = 0
) -> dict[str, float]:
    """Per incoming record: score it against its blocking neighbours (the candidates the
    ingest path would load), topped up with random records to 50 (the worst case)."""
    frame = prepare(records, "person")
    shared_key_guard(frame)
    blocked = block(frame)
    neighbours: dict[int, list[int]] = {}
    rng = random.Random(seed)
    picks = set(rng.sample(range(len(records)), min(queries, len(records))))
    for a, b in zip(blocked.ia.tolist(), blocked.ib.tolist(), strict=True):
        if a in picks:
            neighbours.setdefault(a, []).append(b)
        if b in picks:
            neighbours.setdefault(b, []).append(a)
    natural, padded, counts = [], [], []
    for q in sorted(picks):
        found = neighbours.get(q, [])[:50]
        counts.append(len(found))
        candidates = [records[k] for k in found]
        if candidates:
            started = time.perf_counter()
            model.score_candidates(records[q], candidates)
            natural.append(time.perf_counter() - started)
        fill = [records[rng.randrange(len(records))] for _ in range(50 - len(candidates))]
        started = time.perf_counter()
        model.score_candidates(records[q], candidates + fill)
        padded.append(time.perf_counter() - started)
    return {
        "candidates_median": float(np.median(counts)),
        "natural_p50_ms": float(np.percentile(natural, 50) * 1000),
        "natural_p95_ms": float(np.percentile(natural, 95) * 1000),
        "fifty_p50_ms": float(np.percentile(padded, 50) * 1000),
        "fifty_p95_ms": float(np.percentile(padded, 95) * 1000),
    }


def run_splink(records: list[dict[str, Any]], truth: np.ndarray) -> dict[str, Any]:
    """Plain Splink 5 + DuckDB on the same records: the usual tutorial model (EM blocked
    on e-mail and on names, u by random sampling), connected components at 0.95."""
    import duckdb
    import pyarrow as pa
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from .model import _dob_int, canonical_phone
    from .normalize import email as norm_email
    from .normalize import family_name, given_name, postal_code

    started = time.perf_counter()
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "unique_id",
            "first_name",
            "surname",
            "dob",
            "email",
            "phone",
            "postcode",
            "city",
            "address",
        )
    }
    for n, r in enumerate(records):
        dob = _dob_int(r.get("birth_date"))
        rows["unique_id"].append(n)
        rows["first_name"].append(given_name(r.get("first_name") or "") or None)
        rows["surname"].append(family_name(r.get("last_name") or "") or None)
        rows["dob"].append(
            f"{dob // 10000:04d}-{dob // 100 % 100:02d}-{dob % 100:02d}" if dob else None
        )
        rows["email"].append(norm_email(r["email"]) if r.get("email") else None)
        rows["phone"].append(canonical_phone(r.get("phone") or "", r.get("country") or "") or None)
        rows["postcode"].append(
            postal_code(r.get("postal_code") or "", r.get("country") or "") or None
        )
        rows["city"].append((r.get("city") or "").lower() or None)
        rows["address"].append((r.get("address_line1") or "").lower() or None)
    table = pa.table(rows)
    prepared = time.perf_counter()
    con = duckdb.connect()
    db_api = DuckDBAPI(connection=con)
    df = db_api.register(table, table_name="people")
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.PostcodeComparison("postcode"),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("address", 2),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("surname", "dob"),
            block_on("first_name", "surname"),
            block_on("postcode", "surname"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(df, settings, log_level=40)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("first_name", "surname", "dob")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname", "dob")
    )
    trained = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    predicted = time.perf_counter()
    metrics = {}
    cluster_s = 0.0
    for threshold in (0.95, 0.999):
        clock = time.perf_counter()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        )
        result = clusters.as_duckdbpyrelation().select("unique_id, cluster_id").fetchall()
        cluster_s = cluster_s or time.perf_counter() - clock
        ids: dict[Any, int] = {}
        labels = np.arange(len(records), dtype=np.int64) + len(records)
        for uid, cid in result:
            labels[int(uid)] = ids.setdefault(cid, len(ids))
        metrics[str(threshold)] = pairwise_metrics(labels, truth).as_dict()
    pairs = predictions.as_duckdbpyrelation().count("*").fetchall()[0][0]
    return {
        "prepare_s": prepared - started,
        "train_s": trained - prepared,
        "predict_s": predicted - trained,
        "cluster_s": cluster_s,
        "total_s": prepared - started + trained - prepared + predicted - trained + cluster_s,
        "pairs_above_0.5": int(pairs),
        "metrics": metrics,
        "peak_rss_mb": peak_rss_mb(),
    }


def bench(n: int, *, seed: int, splink: bool, latency: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"records_requested": n, "seed": seed}
    started = time.perf_counter()
    world = generate_world(n, seed=seed)
    out["generate_s"] = time.perf_counter() - started
    out["records"] = len(world.records)
    out["entities"] = world.meta["entities"]
    started = time.perf_counter()
    result = resolve_population(world.records, seed=seed)
    out["resolve_s"] = time.perf_counter() - started
    out["stats"] = result.stats
    out["peak_rss_mb"] = peak_rss_mb()
    out["model"] = pairwise_metrics(result.labels, world.truth).as_dict()
    started = time.perf_counter()
    out["baseline"] = pairwise_metrics(deterministic_baseline(world.records), world.truth).as_dict()
    out["baseline_s"] = time.perf_counter() - started
    if latency:
        out["latency"] = _latency(result.model, world.records, seed=seed)
    if splink:
        del result
        gc.collect()
        out["splink"] = run_splink(world.records, world.truth)
    return out


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def render(results: list[dict[str, Any]], command: str) -> str:
    load = os.getloadavg()
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}); load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (other work shares the cores).",
        "",
        "```",
        command,
        "```",
        "",
        "Synthetic multi-system world of people (`customers/identity/evaluation.py`), "
        "seed as shown; timings in seconds, memory is the process's peak RSS.",
        "",
        "| records | generate | normalize | block | compare | train (EM) | score | cluster "
        "| resolve total | candidate pairs | peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t = r["stats"]["kinds"]["person"]["timings_s"]
        pairs = r["stats"]["kinds"]["person"]["pairs_scored"]
        lines.append(
            f"| {r['records']:,} | {_fmt(r['generate_s'])} | {_fmt(t['normalize'])} | "
            f"{_fmt(t['block'])} | {_fmt(t['compare'])} | {_fmt(t.get('train', 0))} | "
            f"{_fmt(t['score'])} | {_fmt(t['cluster'])} | **{_fmt(r['resolve_s'])}** | "
            f"{pairs:,} | {r['peak_rss_mb'] / 1024:.2f} GiB |"
        )
    lines += [
        "",
        "Pairwise quality against the truth (a pair = two records in one cluster):",
        "",
        "| records | seed | model P | model R | model F1 | baseline P | baseline R "
        "| baseline F1 | largest cluster | review pairs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m, b = r["model"], r["baseline"]
        c = r["stats"]["kinds"]["person"]["clustering"]
        lines.append(
            f"| {r['records']:,} | {r['seed']} | {m['precision']:.4f} | {m['recall']:.4f} | "
            f"**{m['f1']:.4f}** | {b['precision']:.4f} | {b['recall']:.4f} | {b['f1']:.4f} | "
            f"{c['largest_cluster']} | {r['stats']['review_pairs']:,} |"
        )
    with_latency = [r for r in results if "latency" in r]
    if with_latency:
        lines += [
            "",
            "Ingest path, `IdentityModel.score_candidates(record, candidates)` in-process "
            "(200 incoming records; 'natural' = its blocking neighbours, '50' = topped up "
            "to 50 candidates):",
            "",
            "| records | median candidates | natural p50 | natural p95 | 50 p50 | 50 p95 |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in with_latency:
            lat = r["latency"]
            lines.append(
                f"| {r['records']:,} | {lat['candidates_median']:.0f} | "
                f"{lat['natural_p50_ms']:.2f} ms | {lat['natural_p95_ms']:.2f} ms | "
                f"{lat['fifty_p50_ms']:.2f} ms | {lat['fifty_p95_ms']:.2f} ms |"
            )
    with_splink = [r for r in results if "splink" in r]
    if with_splink:
        lines += [
            "",
            "Plain Splink 5.0.0 + DuckDB 2.0.0 on the same records (tutorial-style model: "
            "name, surname, dob, email, phone, postcode, city, address; EM blocked on "
            "e-mail and on name + dob; connected components; no guards; peak RSS of the "
            "process after our run too, so at least ours):",
            "",
            "| records | train | predict | cluster | total | P / R / F1 at 0.95 "
            "| P / R / F1 at 0.999 | peak RSS |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in with_splink:
            s = r["splink"]
            m1, m2 = s["metrics"]["0.95"], s["metrics"]["0.999"]
            lines.append(
                f"| {r['records']:,} | {_fmt(s['train_s'])} | {_fmt(s['predict_s'])} | "
                f"{_fmt(s['cluster_s'])} | {_fmt(s['total_s'])} | "
                f"{m1['precision']:.3f} / {m1['recall']:.3f} / {m1['f1']:.3f} | "
                f"{m2['precision']:.3f} / {m2['recall']:.3f} / {m2['f1']:.3f} | "
                f"{s['peak_rss_mb'] / 1024:.2f} GiB |"
            )
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the section in a Markdown file, keeping the others."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, action="append", help="repeatable")
    parser.add_argument(
        "--seed", type=int, action="append", help="world seed, repeatable (tuning used 1)"
    )
    parser.add_argument("--splink", action="store_true", help="also run plain Splink 5")
    parser.add_argument(
        "--splink-max", type=int, default=100_000, help="largest size to run Splink on"
    )
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--write", type=Path, help="Markdown file to update")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = args.records or [100_000]
    if args.json:  # one run, as JSON on stdout (the parent process collects it)
        splink = args.splink and sizes[0] <= args.splink_max
        seed = (args.seed or [2])[0]
        result = bench(sizes[0], seed=seed, splink=splink, latency=not args.no_latency)
        print(json.dumps(result, default=str))
        return 0
    results = []
    for seed in args.seed or [2]:
        for n in sizes:
            # A fresh process per run, so that peak RSS is this run's alone.
            print(f"-- {n:,} records, seed {seed}", file=sys.stderr, flush=True)
            cmd = [sys.executable, "-m", "customers.identity.bench", "--json"]
            cmd += ["--records", str(n), "--seed", str(seed)]
            cmd += ["--splink"] if args.splink else []
            cmd += ["--splink-max", str(args.splink_max)]
            cmd += ["--no-latency"] if args.no_latency else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            results.append(result)
            summary = {k: v for k, v in result.items() if k not in ("stats",)}
            print(summary, file=sys.stderr, flush=True)
    command = "python -m customers.identity.bench " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    section = render(results, command.strip())
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
