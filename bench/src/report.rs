//! The results: one row per measured figure, printed as a table and
//! written as JSON with the machine they came from.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Short id: `a`, `b`, `d.low`, `e.actor`, `f.verify`, `g.idle`…
    pub id: String,
    pub scenario: String,
    /// Requests/s, events/s, or bytes for memory rows.
    pub value: f64,
    pub unit: &'static str,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `value` divided by the ceiling's (throughput rows only).
    pub ratio: Option<f64>,
    /// `value` divided by its writer floor's, w (the create rows b and c).
    pub to_floor: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
    /// Counts, errors, concurrency: what a reader needs to trust the row.
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub started_at: String,
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub rows: Vec<Row>,
}

pub fn machine() -> Machine {
    let cpu = std::process::Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Model name:"))
                .map(|l| l["Model name:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu,
        memory_gib: (memory_gib * 10.0).round() / 10.0,
        kernel,
    }
}

fn value_text(r: &Row) -> String {
    match r.unit {
        "bytes" => format!("{:.1} MiB", r.value / 1024.0 / 1024.0),
        unit => format!("{:.0} {unit}", r.value),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.1}")
        }
    })
    .unwrap_or_else(|| "–".into())
}

/// A Markdown table, so the same text reads in a terminal and in docs.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "throughput",
        "p50 ms",
        "p99 ms",
        "ratio to a",
        "ratio to w",
        "target",
        "met",
    ];
    let percent = |x: Option<f64>| {
        x.map(|x| format!("{:.0}%", x * 100.0))
            .unwrap_or_else(|| "–".into())
    };
    let body: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                format!("{} {}", r.id, r.scenario),
                value_text(r),
                ms(r.p50_ms),
                ms(r.p99_ms),
                percent(r.ratio),
                percent(r.to_floor),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "–".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Numbers right-aligned, words left-aligned.
            if (1..=5).contains(&i) {
                s.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
            } else {
                s.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(String::from));
    let mut rule = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        if (1..=5).contains(&i) {
            rule.push_str(&format!("{}:|", "-".repeat(w + 1)));
        } else {
            rule.push_str(&format!("{}|", "-".repeat(w + 2)));
        }
    }
    out.push_str(&rule);
    out.push('\n');
    for row in &body {
        out.push_str(&line(row));
    }
    out
}
