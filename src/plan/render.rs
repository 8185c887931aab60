use std::fmt::Write;

use super::Plan;
use crate::config::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

pub fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(plan).expect("plan serialises");
            s.push('\n');
            s
        }
        Format::Yaml => serde_saphyr::to_string(plan).expect("plan serialises"),
        Format::Table => table(plan),
    }
}

fn columns(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let n = cells.len();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    };
    line(out, header.to_vec());
    for row in rows {
        line(out, row.iter().map(String::as_str).collect());
    }
}

fn problem_rows(problems: &[ConfigError]) -> Vec<Vec<String>> {
    problems
        .iter()
        .map(|e| vec![e.kind.clone(), e.name.clone(), e.field.clone(), e.message.clone()])
        .collect()
}

fn table(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.errors.is_empty() {
        out.push_str("INVALID CONFIGURATION\n");
        columns(&mut out, &["KIND", "NAME", "FIELD", "PROBLEM"], &problem_rows(&plan.errors));
        out.push('\n');
    }
    let rows: Vec<Vec<String>> =
        plan.allocations.iter().map(|a| vec![a.service.clone(), a.ips.join(","), a.pool.clone()]).collect();
    columns(&mut out, &["SERVICE", "IPS", "POOL"], &rows);
    if !plan.pending.is_empty() {
        out.push_str("\nPENDING\n");
        let rows: Vec<Vec<String>> =
            plan.pending.iter().map(|p| vec![p.service.clone(), p.reason.clone()]).collect();
        columns(&mut out, &["SERVICE", "REASON"], &rows);
    }
    if !plan.pools.is_empty() {
        out.push_str("\nPOOLS\n");
        let rows: Vec<Vec<String>> = plan
            .pools
            .iter()
            .map(|p| {
                vec![
                    p.pool.clone(),
                    format!(
                        "{}/{}",
                        p.stats.assigned_v4,
                        p.stats.assigned_v4.saturating_add(p.stats.available_v4)
                    ),
                    format!(
                        "{}/{}",
                        p.stats.assigned_v6,
                        p.stats.assigned_v6.saturating_add(p.stats.available_v6)
                    ),
                ]
            })
            .collect();
        columns(&mut out, &["POOL", "IPV4 USED/TOTAL", "IPV6 USED/TOTAL"], &rows);
    }
    let events: Vec<Vec<String>> = plan
        .events
        .iter()
        .flat_map(|(svc, evs)| {
            evs.iter().map(move |e| {
                vec![svc.clone(), format!("{:?}", e.type_), e.reason.to_string(), e.message.clone()]
            })
        })
        .collect();
    if !events.is_empty() {
        out.push_str("\nEVENTS\n");
        columns(&mut out, &["SERVICE", "TYPE", "REASON", "MESSAGE"], &events);
    }
    if !plan.warnings.is_empty() {
        out.push_str("\nWARNINGS\n");
        columns(&mut out, &["KIND", "NAME", "FIELD", "WARNING"], &problem_rows(&plan.warnings));
    }
    out
}
