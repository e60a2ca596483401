"""The benchmark report: the machine it ran on and the results as Markdown tables."""

from __future__ import annotations

import os
import subprocess

from bench_suites import ONE_CORE_XLA_FLAGS, THREAD_VARIABLES


def machine() -> dict[str, str]:
    import datetime as dt
    import platform
    from importlib import metadata

    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line), "")
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "numpy", "pyarrow", "scikit-learn", "torch", "torchmetrics", "ray"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": dt.date.today().isoformat(),
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "memory_gb": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}",
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "pinning": f"one core (sched_setaffinity), XLA_FLAGS={ONE_CORE_XLA_FLAGS}, "
        + ", ".join(f"{v}=1" for v in THREAD_VARIABLES)
        + ", torch.set_num_threads(1)",
    }


def markdown(results: list[dict[str, object]], info: dict[str, str]) -> str:
    lines = [
        f"Measured {info['date']} on {info['cpus']} x {info['cpu_model']} ({info['memory_gb']} GB), load average "
        f"{info['load_average']} at the end; {info['versions']}.",
        f"Suites run pinned to {info['pinning']}; the Ray runs use both cores.",
        "",
        "| suite | tool | wall s (median) | rows/s | peak RSS MB | speed-up vs scikit-learn | time / raw read |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        if "table" not in result or result["suite"].endswith("(memory)"):
            continue
        for tool, row in result["table"].items():
            wall = row.get("job_s", row["wall_s"])
            speed = f"{row['speedup_vs_sklearn']:.1f}x" if "speedup_vs_sklearn" in row else ""
            read = f"{row['time_vs_read']:.2f}" if "time_vs_read" in row else ""
            lines.append(
                f"| {result['suite']} | {tool} | {wall:.3f} | {row['rows_per_s']:,.0f} | {row['peak_rss_mb']:.0f} "
                f"| {speed} | {read} |"
            )
    notes = []
    for result in results:
        if "values_match_sklearn" in result:
            check = result["values_match_sklearn"]
            worst = max(check["metrics"].values(), key=lambda r: r["diff"] / max(r["allowed"], 1e-300))
            notes.append(
                f"- {result['suite']}: {result['data']}; evalpipe's values match scikit-learn's: "
                f"{'yes' if check['ok'] else 'NO'} (largest difference {worst['diff']:.2e})."
            )
        if "scaling_2_vs_1" in result:
            one, two = result["table"]["ray, 1 actor"], result["table"]["ray, 2 actors"]
            notes.append(
                f"- Ray: 2 actors give {result['scaling_2_vs_1']:.2f}x the rows/s of 1 actor (goal 1.7x); cluster "
                f"start-up {one['cluster_start_s']:.1f} s and actor start-up {one['startup_s']:.2f} / "
                f"{two['startup_s']:.2f} s, not in the rows/s. One actor's process already keeps "
                f"{one['actor_cores']:.2f} cores busy (its CPU seconds over the job's wall time; threads overlap "
                f"reading, the compiled update and sending results), which bounds 2 actors on 2 cores at "
                f"{2 / one['actor_cores']:.2f}x before the driver's and Ray's own share; 2 actors kept "
                f"{two['actor_cores']:.2f} cores busy."
            )
        if "units" in result:
            notes.append(
                f"- Reduce: {result['units']:,} unit states of {result['state_bytes'] / 1e6:.2f} MB merged in "
                f"{result['merge_s']:.2f} s, metrics in {result['metrics_s']:.3f} s (goal: under 1 s in all); by "
                "statistic: "
                + ", ".join(
                    f"{name} {v['state_bytes'] / 1e3:,.0f} kB {v['merge_s']:.2f} s"
                    for name, v in result["per_statistic"].items()
                )
                + "."
            )
        if "rss_ratio_10x_shards" in result:
            rows = ", ".join(f"{k}: {v['peak_rss_mb']:.0f} MB" for k, v in result["table"].items())
            notes.append(
                f"- Memory, local runner: peak RSS {rows}; 10x the shards: {result['rss_ratio_10x_shards']:.2f}x."
            )
    return "\n".join([*lines, "", *notes])
