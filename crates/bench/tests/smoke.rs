//! The benchmark's smoke mode runs every scenario for a moment and checks what it measures:
//! it proves the benchmark works; it asserts no speed.

#[test]
fn smoke_run_measures_every_figure_and_every_check_passes() {
    let report = chatd_bench::run(chatd_bench::Opts::smoke()).expect("the benchmark runs");
    assert!(report.checks_passed, "{}", report.markdown());
    for figure in ["create-message throughput", "create-to-searchable lag", "search latency", "peak RSS"] {
        assert!(
            report.rows.iter().any(|r| r.figure.starts_with(figure)),
            "missing {figure}:\n{}",
            report.markdown()
        );
    }
}
