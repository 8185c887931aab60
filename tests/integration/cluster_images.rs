//! Container images for the cluster lab. ferrolb's own come from `scripts/images`
//! (target/images/*.tar, or FERROLB_IMAGES_DIR); the sandbox (pause) image and a small web server
//! are built here at test time with buildah, from scratch, into the lab's directory.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const PAUSE_IMAGE: &str = "localhost/ferrolb-pause:e2e";
pub const WEB_IMAGE: &str = "localhost/ferrolb-web:e2e";

/// Where `scripts/images` leaves ferrolb's image archives.
pub fn images_dir() -> PathBuf {
    std::env::var_os("FERROLB_IMAGES_DIR")
        .map_or_else(|| crate::repo_root().join("target/images"), PathBuf::from)
}

/// ferrolb's image archive (and the FRR sidecar's when `frr`), or why one is missing.
pub fn ferrolb_archives(frr: bool) -> Result<Vec<PathBuf>, String> {
    let dir = images_dir();
    let names: &[&str] = if frr { &["ferrolb.tar", "ferrolb-frr.tar"] } else { &["ferrolb.tar"] };
    let files: Vec<PathBuf> = names.iter().map(|f| dir.join(f)).collect();
    match files.iter().find(|f| !f.is_file()) {
        Some(missing) => {
            Err(format!("no {} (run scripts/images, or set FERROLB_IMAGES_DIR)", missing.display()))
        }
        None => Ok(files),
    }
}

/// Every archive of ferrolb's that is there, for the nodes to import: this build's, and an
/// older build's when an upgrade test names one (each tagged with its own chart's appVersion).
pub fn present_archives() -> Vec<PathBuf> {
    let dirs = [Some(images_dir()), crate::cluster_upgrade::older_build_dir()];
    let names = ["ferrolb.tar", "ferrolb-frr.tar"];
    dirs.iter().flatten().flat_map(|d| names.map(|f| d.join(f))).filter(|f| f.is_file()).collect()
}

/// An image from scratch: (tag, files copied in as (from, to), entrypoint, archive file name).
type Recipe<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);

/// Builds the pause and web images into `dir`; the archives to import on every node.
pub fn build_lab_images(dir: &Path, kube_bin: &Path) -> Result<Vec<PathBuf>, String> {
    let storage = dir.join("buildah");
    let buildah = |args: &[&str]| -> Result<String, String> {
        let out = Command::new("buildah")
            .arg("--root")
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .map_err(|e| format!("buildah: {e}"))?;
        if !out.status.success() {
            return Err(format!("buildah {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    std::fs::write(www.join("index.html"), "ferrolb e2e\n").map_err(|e| e.to_string())?;
    let pause = kube_bin.join("pause").display().to_string();
    let busybox = "/bin/busybox".to_string();
    let www = www.display().to_string();
    let recipes: [Recipe; 2] = [
        (PAUSE_IMAGE, vec![(pause.as_str(), "/pause")], r#"["/pause"]"#, "pause.tar"),
        (
            WEB_IMAGE,
            vec![(busybox.as_str(), "/bin/busybox"), (www.as_str(), "/www")],
            r#"["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]"#,
            "web.tar",
        ),
    ];
    let mut archives = Vec::new();
    for (tag, files, entrypoint, archive) in recipes {
        let c = buildah(&["from", "scratch"])?;
        for (from, to) in files {
            buildah(&["copy", &c, from, to])?;
        }
        buildah(&["config", "--entrypoint", entrypoint, &c])?;
        buildah(&["commit", "-q", &c, tag])?;
        let path = dir.join(archive);
        buildah(&["push", "-q", tag, &format!("docker-archive:{}:{tag}", path.display())])?;
        buildah(&["rm", &c])?;
        archives.push(path);
    }
    let _ = std::fs::remove_dir_all(&storage);
    Ok(archives)
}
