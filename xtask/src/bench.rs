//! `cargo xtask bench [NAME] [--quick]`: each figure beside its baseline or goal, as a ratio,
//! appended to bench/results.md with the date, the machine and the commit.

use crate::{build_pkg, root, tools};
use std::io::Write;

const NAMES: [&str; 1] = ["size"];

/// One row of a benchmark table.
struct Row {
    figure: String,
    ours: f64,
    baseline: f64,
    unit: &'static str,
    goal: String,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str);
    if let Some(n) = name {
        if !NAMES.contains(&n) {
            return Err(format!(
                "unknown benchmark `{n}`; one of {}",
                NAMES.join(", ")
            ));
        }
    }
    tools::ensure(tools::Need::Build)?;
    let mut tables = Vec::new();
    if name.is_none_or(|n| n == "size") {
        tables.push(("size", size()?));
    }
    let machine = machine();
    let commit = crate::tools_output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let date = crate::tools_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let mut md = String::new();
    for (name, rows) in &tables {
        md.push_str(&format!(
            "\n### {name} — {} — {} — commit {}{}\n\n| figure | swarmdrop | baseline | ratio | goal |\n|---|---|---|---|---|\n",
            date.trim(),
            machine,
            commit.trim(),
            if quick { " (quick)" } else { "" }
        ));
        for r in rows {
            md.push_str(&format!(
                "| {} | {:.1} {} | {:.1} {} | {:.2}× | {} |\n",
                r.figure,
                r.ours,
                r.unit,
                r.baseline,
                r.unit,
                r.ours / r.baseline,
                r.goal
            ));
        }
    }
    print!("{md}");
    if !quick {
        let dir = root().join("bench");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("results.md"))
            .map_err(|e| format!("bench/results.md: {e}"))?;
        f.write_all(md.as_bytes()).map_err(|e| e.to_string())?;
        println!("\nappended to bench/results.md");
    }
    Ok(())
}

/// The wasm bundle, raw and gzipped, against the 250 KB gzipped goal.
fn size() -> Result<Vec<Row>, String> {
    build_pkg()?;
    let wasm = root().join("pkg").join("swarmdrop_bg.wasm");
    let bytes = std::fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes).map_err(|e| e.to_string())?;
    let gz = gz.finish().map_err(|e| e.to_string())?;
    let goal = 250.0;
    Ok(vec![
        Row {
            figure: "wasm, raw".into(),
            ours: bytes.len() as f64 / 1000.0,
            baseline: goal,
            unit: "KB",
            goal: "(for reference)".into(),
        },
        Row {
            figure: "wasm, gzip -9".into(),
            ours: gz.len() as f64 / 1000.0,
            baseline: goal,
            unit: "KB",
            goal: "≤ 1.00× of 250 KB".into(),
        },
    ])
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}")
}
