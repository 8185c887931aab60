//! BGP announcements through FRR, the pure half: which prefixes a node announces to which
//! peers with which attributes ([`announce`]), and the FRR configuration that says so
//! ([`frr`], rendered by [`render`] through `templates/frr.conf.tera`).

pub mod announce;
pub mod extras;
pub mod frr;
pub mod guard;

pub use crate::topology::ServiceState;
pub use announce::{Announcement, NodePlan, plan_node};
pub use frr::{FrrConfig, Secrets};

const TEMPLATE: &str = include_str!("../../templates/frr.conf.tera");

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the FRR template does not compile: {0}")]
    Template(String),
    #[error("rendering the FRR configuration failed: {0}")]
    Render(String),
    /// A value would have left its place in the file (see [`guard`]): nothing is laid out.
    #[error("refused to lay out the FRR configuration: {0}")]
    Unsafe(String),
}

/// The template, compiled once: compiling it cost more than laying most configurations out.
static TERA: std::sync::LazyLock<Result<tera::Tera, String>> = std::sync::LazyLock::new(|| {
    let mut tera = tera::Tera::default();
    // frr.conf is not HTML: nothing may be escaped.
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_template("frr.conf", TEMPLATE).map_err(|e| format!("{e:?}"))?;
    Ok(tera)
});

/// Lays a view model out as an frr.conf.
pub fn render(config: &FrrConfig) -> Result<String, RenderError> {
    lay_out(&serde_json::to_value(config).map_err(|e| RenderError::Render(e.to_string()))?)
}

/// The view model, serialised, through the guard, the template and the guard again.
fn lay_out(view: &serde_json::Value) -> Result<String, RenderError> {
    guard::check_view(view).map_err(RenderError::Unsafe)?;
    let tera = TERA.as_ref().map_err(|e| RenderError::Template(e.clone()))?;
    let ctx = tera::Context::from_serialize(view).map_err(|e| RenderError::Render(format!("{e:?}")))?;
    let mut out = tera.render("frr.conf", &ctx).map_err(|e| RenderError::Render(format!("{e:?}")))?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    guard::check(&out).map_err(RenderError::Unsafe)?;
    Ok(out)
}

/// A rendered configuration that announces nothing: the same sessions, no `network` line. What
/// a speaker leaving for good (its DaemonSet deleted) gives FRR last, so that its peers hear
/// every route withdrawn instead of keeping them as stale for the graceful-restart time.
pub fn withdrawn(config: &str) -> String {
    config.lines().filter(|l| !l.trim_start().starts_with("network ")).map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests;
