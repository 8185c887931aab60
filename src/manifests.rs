//! Manifests from files and directories, the way `ferrolb plan -f` and `ferrolb speaker -f`
//! read them: multi-document YAML or JSON, directories by name order, each file capped before
//! it is read. The I/O half of `plan::manifest`, which parses what this reads.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::plan::Inputs;
use crate::plan::manifest::MAX_MANIFEST_BYTES;

/// Every manifest under `paths` (files, or directories of .yaml/.yml/.json files), in path order.
pub fn read(paths: &[PathBuf], recursive: bool, namespace: &str) -> Result<Inputs, String> {
    let mut inputs = Inputs::new(namespace);
    let mut files = Vec::new();
    for path in paths {
        collect(path, recursive, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for file in &files {
        let text = read_capped(file)?;
        inputs.add_yaml(&file.display().to_string(), &text).map_err(|e| e.to_string())?;
    }
    Ok(inputs)
}

/// `file`'s text, unless it is bigger than [`MAX_MANIFEST_BYTES`]: its size is checked before
/// reading, and no more than one byte past the limit is read either way (a file that grew since,
/// or a pipe or device that has no size).
fn read_capped(file: &Path) -> Result<String, String> {
    let failed = |e: std::io::Error| format!("{}: {e}", file.display());
    let too_big = |size: &str| {
        let limit = MAX_MANIFEST_BYTES >> 20;
        format!(
            "{}: refused: {size}, more than the {limit} MiB ferrolb reads from one manifest",
            file.display()
        )
    };
    let f = std::fs::File::open(file).map_err(failed)?;
    let size = f.metadata().map_err(failed)?.len();
    if size > MAX_MANIFEST_BYTES as u64 {
        return Err(too_big(&format!("{size} bytes")));
    }
    let mut text = String::new();
    f.take(MAX_MANIFEST_BYTES as u64 + 1).read_to_string(&mut text).map_err(failed)?;
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(too_big("more bytes than its size said"));
    }
    Ok(text)
}

fn collect(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        // Reading it reports a missing file with the OS's words.
        std::fs::metadata(path)?;
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                collect(&entry, recursive, out)?;
            }
        } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            out.push(entry);
        }
    }
    Ok(())
}

/// Names and modification times of every file under the manifest paths: cheap to compare.
pub fn stamp(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        match std::fs::read_dir(&p) {
            Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
            Err(_) => {
                let meta = std::fs::metadata(&p).ok();
                out.push((p, meta.as_ref().and_then(|m| m.modified().ok()), meta.map_or(0, |m| m.len())));
            }
        }
    }
    out.sort();
    out
}
