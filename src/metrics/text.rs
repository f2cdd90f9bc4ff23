//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per
//! family, then its samples, label values escaped.

use std::fmt::Write;

use super::Histogram;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One family being written: its head is out, its samples follow.
pub(super) struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    pub(super) fn new(out: &'a mut String, name: &'static str, kind: Kind, help: &str) -> Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        // HELP escapes only backslash and line feed.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out, name }
    }

    pub(super) fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(self.out, value);
        self.out.push('\n');
    }

    pub(super) fn histogram(&mut self, labels: &[(&str, &str)], bounds: &[f64], h: &Histogram) {
        let mut cumulative = 0;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += h.buckets.get(i).copied().unwrap_or(0);
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample("_bucket", &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample("_bucket", &with_le, h.count as f64);
        self.sample("_sum", labels, h.sum);
        self.sample("_count", labels, h.count as f64);
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v.is_nan() {
        return "NaN".to_owned();
    }
    // Integers without a fraction, like Prometheus's own clients print them.
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    format!("{v}")
}

fn push_value(out: &mut String, v: f64) {
    out.push_str(&format_value(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        let mut f = Family::new(&mut out, "x", Kind::Gauge, "a \\ help\nline");
        f.sample("", &[("route", "a\"b\\c\nd")], 1.5);
        assert_eq!(
            out,
            "# HELP x a \\\\ help\\nline\n# TYPE x gauge\nx{route=\"a\\\"b\\\\c\\nd\"} 1.5\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        let bounds = [0.1, 1.0];
        for v in [0.05, 0.5, 0.7, 5.0] {
            h.observe(&bounds, v);
        }
        let mut out = String::new();
        Family::new(&mut out, "h", Kind::Histogram, "h").histogram(&[], &bounds, &h);
        assert!(out.contains("h_bucket{le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("h_count 4\n"), "{out}");
        assert!(out.contains("h_sum 6.25\n"), "{out}");
    }
}
