import math

from fangprune.report.costs import cost_table, read_benchmarks, to_csv, to_markdown

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, s, rss, cpu):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n")


def end_line(path, *peaks):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'2026-01-01 00:00:00,000 INFO fangprune.io: end step{i}: '
                            f'{{"step": "step{i}", "wall_s": 1.0, "max_rss_mib": {p}}}\n' for i, p in enumerate(peaks)))


def test_costs_sum_time_and_take_peak_memory_per_rule_and_model(tmp_path):
    b = tmp_path / "benchmarks"
    bench(b / "prune/m1/obc/sp0.20.tsv", 10.0, 500.0, 9.0)
    bench(b / "prune/m1/obc/sp0.40.tsv", 30.0, 700.0, 25.0)
    bench(b / "prune/m2/obc/sp0.20.tsv", 5.0, 100.0, 4.0)
    bench(b / "prepare_model/m1.tsv", 2.0, "-", 1.5)  # too short for a memory sample
    bench(b / "tables/tables.tsv", 1.0, 50.0, 1.0)
    bench(b / "prune/other/obc/sp0.20.tsv", 99.0, 9999.0, 99.0)  # another sweep's model: left out
    logs = tmp_path / "logs"  # the job's own getrusage peak, which the sampled benchmark can miss
    end_line(logs / "prune/m1/obc/sp0.40.log", 400.0, 2345.6)
    end_line(logs / "prepare_model/m1.log", 1500.25)
    table = cost_table(read_benchmarks(b, ["m1", "m2"], logs))
    rows = {(r["rule"], r["model"]): r for r in table.to_dict("records")}
    assert {k: v for k, v in rows[("prune", "m1")].items() if k != "log_peak_mib"} == {
        "rule": "prune", "model": "m1", "jobs": 2, "wall_s": 40.0, "cpu_s": 34.0, "max_rss_mb": 700.0,
        "max_job_wall_s": 30.0}
    assert rows[("prune", "m1")]["log_peak_mib"] == 2345.6 and rows[("prepare_model", "m1")]["log_peak_mib"] == 1500.2
    assert math.isnan(rows[("prune", "m2")]["log_peak_mib"])  # no log: no figure
    assert math.isnan(rows[("prepare_model", "m1")]["max_rss_mb"])
    assert rows[("tables", "-")]["jobs"] == 1
    assert rows[("total", "m1")]["wall_s"] == 42.0 and rows[("total", "m1")]["max_rss_mb"] == 700.0
    assert rows[("total", "all")]["jobs"] == 5 and rows[("total", "all")]["wall_s"] == 48.0
    assert ("prune", "other") not in rows
    csv = to_csv(table).splitlines()
    assert csv[0] == "rule,model,jobs,wall_s,cpu_s,max_rss_mb,log_peak_mib,max_job_wall_s"
    assert "prepare_model,m1,1,2.0,1.5,,1500.2,2.0" in csv and csv[-1] == "total,all,5,48.0,40.5,700.0,2345.6,30.0"
    assert [k for k in rows][-3:] == [("total", "m1"), ("total", "m2"), ("total", "all")]
    md = [[c.strip() for c in line.strip("|").split("|")] for line in to_markdown(table).splitlines()]
    assert ["prune", "m1", "2", "40.0", "34.0", "700", "2346", "30.0"] in md
    assert md[-1] == ["**total**", "**all**", "**5**", "**48.0**", "**40.5**", "**700**", "**2346**", "**30.0**"]


def test_costs_find_the_model_below_a_dataset_folder(tmp_path):
    b = tmp_path / "benchmarks"  # evaluate_ppl/<dataset>/<model>/...: the model is not the first folder
    bench(b / "evaluate_ppl/wikitext2/m1/dense.tsv", 4.0, 300.0, 3.0)
    bench(b / "evaluate_ppl/ptb/m1/obc/sp0.20.tsv", 6.0, 400.0, 5.0)
    bench(b / "evaluate_ppl/ptb/other/dense.tsv", 9.0, 900.0, 9.0)
    rows = {(r["rule"], r["model"]): r for r in cost_table(read_benchmarks(b, ["m1"])).to_dict("records")}
    assert rows[("evaluate_ppl", "m1")]["jobs"] == 2 and rows[("evaluate_ppl", "m1")]["wall_s"] == 10.0
    assert rows[("evaluate_ppl", "m1")]["max_rss_mb"] == 400.0 and ("evaluate_ppl", "other") not in rows


def test_the_jobs_own_cpu_time_replaces_the_sampled_one(tmp_path):
    """Snakemake samples CPU time every 30 s, so a job's last stretch is missed (16-56 CPU s for equal jobs of
    about 40 s wall, docs/scale.md); a job whose log carries process_cpu_s is costed by that figure."""
    b, logs = tmp_path / "benchmarks", tmp_path / "logs"
    bench(b / "cluster/m1/a.tsv", 40.0, 500.0, 16.0)
    bench(b / "cluster/m1/b.tsv", 40.0, 500.0, 16.0)
    (logs / "cluster/m1").mkdir(parents=True)
    (logs / "cluster/m1/a.log").write_text(
        '2026-01-01 00:00:00,000 INFO fangprune: end load: {"step": "load", "wall_s": 20.0, "cpu_s": 30.0, '
        '"process_cpu_s": 34.5, "max_rss_mib": 900.0}\n'
        '2026-01-01 00:00:40,000 INFO fangprune: end cluster: {"step": "cluster", "wall_s": 20.0, "cpu_s": 36.0, '
        '"process_cpu_s": 70.5, "max_rss_mib": 950.0}\n')
    frame = read_benchmarks(b, ["m1"], logs).set_index("job")
    assert frame.loc["m1/a", "cpu_s"] == 70.5 and frame.loc["m1/b", "cpu_s"] == 16.0  # b: no log, the sample
    assert cost_table(frame.reset_index()).set_index(["rule", "model"]).loc[("cluster", "m1"), "cpu_s"] == 86.5


def test_timed_step_logs_the_cpu_time_it_used(tmp_path, caplog):
    import logging
    import time

    from fangprune.io import log_figures, timed_step

    with caplog.at_level(logging.INFO, logger="fangprune"):
        with timed_step("spin") as info:
            end = time.process_time() + 0.3
            while time.process_time() < end:
                pass
    assert 0.3 <= info["cpu_s"] <= info["process_cpu_s"] and info["cpu_s"] < 0.3 + 0.2
    log = tmp_path / "job.log"
    log.write_text("".join(f"2026-01-01 00:00:00,000 INFO fangprune: {r.getMessage()}\n" for r in caplog.records))
    assert log_figures(log)["process_cpu_s"] == info["process_cpu_s"]
