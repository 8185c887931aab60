//! Prometheus' text format 0.0.4, the one MetalLB serves.
//!
//! prometheus-client writes only OpenMetrics, where a counter's samples must end in `_total`.
//! MetalLB's counters `metallb_layer2_requests_received`, `metallb_bgp_opens_sent`, … have no
//! such suffix, and Prometheus keeps a sample's name as the series name: served as OpenMetrics
//! they would reach Prometheus as `…_received_total` and miss every MetalLB dashboard and alert.
//! So the registry's OpenMetrics text is rewritten into 0.0.4, where a counter's family and
//! sample share one name: `<family>_total` unless the family is one of `bare` (MetalLB's names
//! without the suffix).

use std::fmt::Write;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The families of `openmetrics` (as prometheus-client encodes a registry) in format 0.0.4.
pub fn from_openmetrics(openmetrics: &str, bare: &[&str]) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, and its name depends on the type: held until TYPE is read.
    let mut help: Option<(&str, &str)> = None;
    // The family being read: (name in the input, sample name to write, its kind).
    let mut family: Option<(&str, String, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (written, kind_written) = match kind {
                "counter" if bare.contains(&name) => (name.to_string(), "counter"),
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(h, _)| *h == name) {
                let _ = writeln!(out, "# HELP {written} {}", help_text(text));
            }
            let _ = writeln!(out, "# TYPE {written} {kind_written}");
            family = Some((name, written, kind));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        // Exemplars exist only in OpenMetrics.
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
        let (name, rest) = sample.split_at(name_end);
        match &family {
            // `_created` has no place in 0.0.4: only `_total` is written.
            Some((f, written, "counter")) => {
                if name.strip_prefix(f) == Some("_total") {
                    let _ = writeln!(out, "{written}{rest}");
                }
            }
            Some((f, written, "info")) if name == *f || name.strip_prefix(f) == Some("_info") => {
                let _ = writeln!(out, "{written}{rest}");
            }
            _ => {
                let _ = writeln!(out, "{sample}");
            }
        }
    }
    out
}

/// HELP text in 0.0.4 escapes only backslash and newline (OpenMetrics also escapes quotes).
fn help_text(openmetrics: &str) -> String {
    openmetrics.replace("\\\"", "\"")
}

/// A metric family written straight in 0.0.4, for values read from elsewhere (FRR) rather than
/// kept in the registry.
pub struct Family<'a> {
    pub name: &'a str,
    pub help: &'a str,
    /// `counter` or `gauge`.
    pub kind: &'a str,
    /// (labels as [`labels`] writes them, value)
    pub samples: Vec<(&'a str, u64)>,
}

impl Family<'_> {
    pub fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{}{labels} {value}", self.name);
        }
    }
}

/// `{k="v",…}`, values escaped; written once per series and shared by its families.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
        a_requests_total{ip=\"192.0.2.1\"} 3\na_requests_created{ip=\"192.0.2.1\"} 1.7e9\n\
        # HELP a_updates Updates.\n# TYPE a_updates counter\na_updates_total 2 # {id=\"x\"} 1\n\
        # HELP a_up Up.\n# TYPE a_up gauge\na_up{peer=\"p\"} 1\n\
        # HELP a_seconds Latency.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
        a_seconds_sum 0.5\na_seconds_count 1\na_seconds_bucket{le=\"+Inf\"} 1\n# EOF\n";

    #[test]
    fn counters_keep_the_name_they_were_given_or_gain_total() {
        let text = from_openmetrics(OPENMETRICS, &["a_requests"]);
        assert_eq!(
            text,
            "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests{ip=\"192.0.2.1\"} 3\n\
             # HELP a_updates_total Updates.\n# TYPE a_updates_total counter\na_updates_total 2\n\
             # HELP a_up Up.\n# TYPE a_up gauge\na_up{peer=\"p\"} 1\n\
             # HELP a_seconds Latency.\n# TYPE a_seconds histogram\n\
             a_seconds_sum 0.5\na_seconds_count 1\na_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn written_families_escape_label_values() {
        let mut out = String::new();
        let series = labels(&[("peer", "a\"b\\c"), ("vrf", "red")]);
        Family { name: "m_up", help: "Up.", kind: "gauge", samples: vec![(&series, 1)] }.write(&mut out);
        assert_eq!(out, "# HELP m_up Up.\n# TYPE m_up gauge\nm_up{peer=\"a\\\"b\\\\c\",vrf=\"red\"} 1\n");
        let mut empty = String::new();
        Family { name: "m_c", help: "C.", kind: "counter", samples: vec![] }.write(&mut empty);
        assert_eq!(empty, "# HELP m_c C.\n# TYPE m_c counter\n");
    }
}
