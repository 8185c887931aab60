use std::fmt;

use serde::Serialize;

/// One thing wrong with the configuration, pointing at the object and field to fix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, thiserror::Error)]
#[error("{kind} {name:?}: {field}: {message}")]
pub struct ConfigError {
    pub kind: String,
    pub name: String,
    pub field: String,
    pub message: String,
    /// Fixed by creating a missing object (a Secret, BFDProfile or Community alias) rather than
    /// by editing this one; the webhook must not reject for it, creation order is free.
    #[serde(skip)]
    pub transient: bool,
}

/// Every problem found in one pass, sorted so output is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration error(s)", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Collects problems for one object at a time, so call sites only say field and message.
pub(crate) struct Report<'a> {
    pub errors: &'a mut Vec<ConfigError>,
    pub warnings: &'a mut Vec<ConfigError>,
}

impl Report<'_> {
    pub fn on<'r>(&'r mut self, kind: &'static str, name: &'r str) -> ObjectReport<'r> {
        ObjectReport { errors: self.errors, warnings: self.warnings, kind, name }
    }
}

pub(crate) struct ObjectReport<'r> {
    errors: &'r mut Vec<ConfigError>,
    warnings: &'r mut Vec<ConfigError>,
    kind: &'static str,
    name: &'r str,
}

impl ObjectReport<'_> {
    fn make(&self, field: impl Into<String>, message: impl Into<String>, transient: bool) -> ConfigError {
        ConfigError {
            kind: self.kind.to_string(),
            name: self.name.to_string(),
            field: field.into(),
            message: message.into(),
            transient,
        }
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let e = self.make(field, message, false);
        self.errors.push(e);
    }

    pub fn missing(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let e = self.make(field, message, true);
        self.errors.push(e);
    }

    pub fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let e = self.make(field, message, false);
        self.warnings.push(e);
    }
}
