//! `chatd-bench`: see BENCHMARKS.md.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let opts = chatd_bench::Opts::parse();
    println!("machine: {}", chatd_bench::machine());
    println!("options: {opts:?}");
    let report = chatd_bench::run(opts)?;
    println!("\n{}", report.markdown());
    anyhow::ensure!(report.checks_passed, "some checks failed (see the notes above)");
    Ok(())
}
