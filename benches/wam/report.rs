//! What a scenario measured: a row of the printed table and one machine-readable line.

use serde_json::{Map, Value};

use crate::backend;

/// One measured value, with its unit for the table.
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

/// A scenario's outcome: its metrics, the targets it is held to, and notes for the reader.
pub struct Row {
    /// `fetch` on SQLite, `fetch-postgres` on PostgreSQL.
    pub scenario: String,
    /// `sqlite` or `postgres`, also in the JSON line.
    pub backend: &'static str,
    pub metrics: Vec<Metric>,
    /// (metric name, a sentence saying the target and whether it was met)
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

pub struct Target {
    pub what: String,
    pub met: bool,
}

impl Row {
    /// The row of scenario `name` run on `target`'s backend; a PostgreSQL row names the
    /// server's durability settings, without which its write times mean little.
    pub fn new(name: &str, target: &backend::Target) -> Self {
        let mut row = Self {
            scenario: target.scenario(name),
            backend: target.backend.as_str(),
            metrics: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        };
        if let Some(settings) = target.postgres_settings() {
            row.note(format!("database: {settings}"));
        }
        row
    }

    pub fn metric(&mut self, name: &'static str, value: f64, unit: &'static str) -> &mut Self {
        self.metrics.push(Metric { name, value, unit });
        self
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// `value <= limit` (at_most) or `value >= limit`, stated in the reader's words.
    pub fn target(&mut self, name: &str, at_most: bool, limit: f64, unit: &str) -> &mut Self {
        let value = self.get(name).unwrap_or(f64::NAN);
        let met = if at_most {
            value <= limit
        } else {
            value >= limit
        };
        let op = if at_most { "≤" } else { "≥" };
        self.targets.push(Target {
            what: format!(
                "{name} {op} {} {unit} (measured {})",
                fmt(limit),
                fmt(value)
            ),
            met,
        });
        self
    }

    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    /// `BENCH {"scenario": ..., "<metric>": value, ..., "targets_met": bool}`
    pub fn json_line(&self) -> String {
        let mut m = Map::new();
        m.insert("scenario".into(), Value::from(self.scenario.as_str()));
        m.insert("backend".into(), Value::from(self.backend));
        for x in &self.metrics {
            let v = if x.value.is_finite() {
                Value::from((x.value * 1000.0).round() / 1000.0)
            } else {
                Value::Null
            };
            m.insert(x.name.into(), v);
        }
        m.insert(
            "targets_met".into(),
            Value::from(self.targets.iter().all(|t| t.met)),
        );
        format!("BENCH {}", Value::Object(m))
    }

    pub fn print(&self) {
        println!("\n== {} ==", self.scenario);
        for x in &self.metrics {
            println!("  {:<34} {:>14} {}", x.name, fmt(x.value), x.unit);
        }
        for t in &self.targets {
            println!("  [{}] {}", if t.met { "met" } else { "MISSED" }, t.what);
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
    }
}

pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The summary table of every scenario that ran, as Markdown (pasted into BENCHMARKS.md).
pub fn print_table(rows: &[Row]) {
    println!("\n| scenario | metric | value | unit |");
    println!("|---|---|---:|---|");
    for r in rows {
        for m in &r.metrics {
            println!(
                "| {} | {} | {} | {} |",
                r.scenario,
                m.name,
                fmt(m.value),
                m.unit
            );
        }
    }
    println!();
    for r in rows {
        println!("{}", r.json_line());
    }
}
