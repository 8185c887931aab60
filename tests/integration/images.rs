//! The container images: `scripts/images` (mmdebstrap + buildah, no registry) and the two
//! Dockerfiles must build the same thing (packages, files, user, entrypoint), and the docker
//! archives the script wrote must hold it: tags the chart's defaults name, binaries that run
//! in the image's own root filesystem (as the image's user), FRR of the pinned version.
//!
//! The archive checks need root (chroot) and `target/images/*.tar` (`scripts/images`); without
//! them they print `skipped: <why>`. They leave each image's unpacked root in
//! `target/images/unpacked/<image>`, where scripts/test runs the FRR entrypoint tests on it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What an image is made of, as either build spells it.
#[derive(Debug, PartialEq, Eq, Default)]
struct Recipe {
    packages: BTreeSet<String>,
    /// (source in the work tree, path in the image).
    copies: BTreeSet<(String, String)>,
    /// Empty: the base image's (root).
    user: String,
    entrypoint: Vec<String>,
}

struct Image {
    name: &'static str,
    dockerfile: &'static str,
    archive: &'static str,
    /// The key under which charts/ferrolb/values.yaml names its repository.
    values_key: &'static str,
}

const IMAGES: [Image; 2] = [
    Image { name: "ferrolb", dockerfile: "Dockerfile", archive: "ferrolb.tar", values_key: "image" },
    Image {
        name: "frr",
        dockerfile: "frr-sidecar/Dockerfile",
        archive: "ferrolb-frr.tar",
        values_key: "frr",
    },
];

fn read(rel: &str) -> String {
    let path = crate::repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `# image: NAME KEY=VALUE` lines of scripts/images for one image.
fn script_recipe(name: &str) -> Recipe {
    let mut r = Recipe::default();
    let prefix = format!("# image: {name} ");
    for line in read("scripts/images").lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        let (key, value) =
            rest.split_once('=').unwrap_or_else(|| panic!("scripts/images: `{line}` has no ="));
        match key {
            "packages" => r.packages.extend(value.split_whitespace().map(str::to_string)),
            "copy" => {
                let (src, dest) = value.split_once(':').unwrap_or_else(|| panic!("`{line}`: copy=SRC:DEST"));
                r.copies.insert((src.to_string(), dest.to_string()));
            }
            "user" => r.user = value.to_string(),
            "entrypoint" => {
                r.entrypoint = serde_json::from_str(value).unwrap_or_else(|e| panic!("`{line}`: {e}"))
            }
            "version" => {}
            other => panic!("scripts/images: unknown key {other} in `{line}`"),
        }
    }
    r
}

/// The pinned FRR version scripts/images installs.
fn script_frr_version() -> String {
    read("scripts/images")
        .lines()
        .find_map(|l| l.strip_prefix("# image: frr version="))
        .expect("scripts/images pins the FRR version")
        .to_string()
}

/// The final stage of a Dockerfile, as a recipe. Understands what ferrolb's Dockerfiles use:
/// ARG defaults, `apt-get install` in RUN, COPY (from the build stage's /src or the context),
/// USER and an exec-form ENTRYPOINT.
fn dockerfile_recipe(rel: &str) -> (Recipe, Vec<(String, String)>) {
    let text = read(rel).replace("\\\n", " ");
    let stage: Vec<&str> = {
        let lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM");
        lines[last_from + 1..].to_vec()
    };
    let mut args = Vec::new();
    let mut r = Recipe::default();
    let expand = |word: &str, args: &[(String, String)]| {
        let mut w = word.trim_matches('"').to_string();
        for (k, v) in args {
            w = w.replace(&format!("${{{k}}}"), v);
        }
        w
    };
    for line in stage {
        let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instr {
            "ARG" => {
                if let Some((k, v)) = rest.split_once('=') {
                    args.push((k.to_string(), v.to_string()));
                }
            }
            "RUN" => {
                for cmd in rest.split("&&") {
                    let words: Vec<&str> = cmd.split_whitespace().collect();
                    if let Some(i) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                        let names = words[i + 2..].iter().filter(|w| !w.starts_with('-'));
                        r.packages.extend(names.map(|w| expand(w, &args)));
                    }
                }
            }
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let from_build = words.iter().any(|w| w.starts_with("--from="));
                let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let [src, dest] = paths[..] else { panic!("{rel}: COPY with one source only: `{line}`") };
                let src = if from_build {
                    src.strip_prefix("/src/")
                        .unwrap_or_else(|| panic!("{rel}: `{line}` copies from outside /src"))
                } else {
                    src
                };
                r.copies.insert((src.to_string(), dest.to_string()));
            }
            "USER" => r.user = rest.to_string(),
            "ENTRYPOINT" => {
                r.entrypoint = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("{rel}: ENTRYPOINT not exec form: {e}"))
            }
            _ => {}
        }
    }
    (r, args)
}

#[test]
fn dockerfiles_and_scripts_images_build_the_same_images() {
    for image in &IMAGES {
        let (docker, _) = dockerfile_recipe(image.dockerfile);
        let script = script_recipe(image.name);
        assert!(!script.entrypoint.is_empty(), "scripts/images names no entrypoint for {}", image.name);
        assert_eq!(
            docker, script,
            "{} and scripts/images disagree about the {} image",
            image.dockerfile, image.name
        );
        for (src, _) in &script.copies {
            // Built files come from cargo; the rest must exist in the tree as named.
            if !src.starts_with("target/") {
                assert!(
                    crate::repo_root().join(src).is_file(),
                    "{src} (copied into {}) is missing",
                    image.name
                );
            }
        }
    }
    let (_, args) = dockerfile_recipe("frr-sidecar/Dockerfile");
    let pinned = args.iter().find(|(k, _)| k == "FRR_VERSION").map(|(_, v)| v.clone());
    assert_eq!(
        pinned,
        Some(script_frr_version()),
        "frr-sidecar/Dockerfile and scripts/images pin different FRR"
    );
}

#[test]
fn the_recipe_parser_sees_a_changed_dockerfile() {
    // A Dockerfile that drifted (another user, one more package) must not read as the script's.
    let (good, _) = dockerfile_recipe("Dockerfile");
    let path = std::env::temp_dir().join(format!("ferrolb-dockerfile-{}", std::process::id()));
    let drifted = read("Dockerfile")
        .replace("USER 65534:65534", "USER 1000:1000")
        .replace("ca-certificates", "ca-certificates curl");
    std::fs::write(&path, drifted).unwrap();
    let (bad, _) = dockerfile_recipe(path.to_str().unwrap());
    std::fs::remove_file(&path).unwrap();
    assert_eq!(good, script_recipe("ferrolb"));
    assert_eq!(bad.user, "1000:1000");
    assert!(bad.packages.contains("curl"));
    assert_ne!(bad, script_recipe("ferrolb"));
}

/// `repository:tag` the chart's default values make for `image`.
fn chart_reference(image: &Image) -> String {
    let chart: Value = serde_saphyr::from_str(&read("charts/ferrolb/Chart.yaml")).unwrap();
    let version = chart["appVersion"].as_str().expect("appVersion in Chart.yaml");
    let values: Value = serde_saphyr::from_str(&read("charts/ferrolb/values.yaml")).unwrap();
    let section = match image.values_key {
        "frr" => &values["frr"]["image"],
        key => &values[key],
    };
    let repo = section["repository"].as_str().expect("an image repository in values.yaml");
    assert_eq!(section["tag"], "", "values.yaml overrides the tag; the archives carry appVersion");
    format!("{repo}:{version}")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A docker archive unpacked: its manifest entry, image config and root filesystem.
struct Unpacked {
    tags: Vec<String>,
    config: Value,
    root: PathBuf,
}

fn unpack(archive: &Path, into: &Path) -> Unpacked {
    let _ = std::fs::remove_dir_all(into);
    let (raw, root) = (into.join("archive"), into.join("rootfs"));
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    run(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&raw));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(raw.join("manifest.json")).unwrap()).unwrap();
    let entries = manifest.as_array().expect("manifest.json is a list");
    assert_eq!(entries.len(), 1, "{}: one image per archive", archive.display());
    let entry = &entries[0];
    let tags =
        entry["RepoTags"].as_array().unwrap().iter().filter_map(|t| t.as_str().map(str::to_string)).collect();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(raw.join(entry["Config"].as_str().unwrap())).unwrap())
            .unwrap();
    // Layers in order, owners kept: the image's files as a container runtime lays them out.
    for layer in entry["Layers"].as_array().unwrap() {
        run(Command::new("tar")
            .args(["-xpf"])
            .arg(raw.join(layer.as_str().unwrap()))
            .args(["--numeric-owner", "-C"])
            .arg(&root));
    }
    std::fs::remove_dir_all(&raw).unwrap();
    Unpacked { tags, config, root }
}

/// Runs `args` in the image's root filesystem as `user` (uid:gid, empty for root).
fn in_image(root: &Path, user: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("chroot");
    if !user.is_empty() {
        cmd.arg(format!("--userspec={user}"));
    }
    run(cmd.arg(root).args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
}

/// The numeric owner of a path inside the image, and the uid the image's passwd gives `name`.
fn owner_and_uid(root: &Path, path: &str, name: &str) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(root.join(path.trim_start_matches('/'))).unwrap().uid();
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let uid = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {name} in the image"));
    (owner, uid)
}

/// Why the archive checks cannot run here, if they cannot.
fn archives_unavailable() -> Option<String> {
    if run(Command::new("id").arg("-u")).trim() != "0" {
        return Some("the image checks chroot into the images and need root".into());
    }
    let dir = crate::repo_root().join("target/images");
    let missing: Vec<&str> = IMAGES.iter().map(|i| i.archive).filter(|a| !dir.join(a).is_file()).collect();
    (!missing.is_empty())
        .then(|| format!("no {} in target/images (scripts/images builds them)", missing.join(", ")))
}

#[test]
fn archives_hold_what_the_recipes_say() {
    if let Some(why) = archives_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let dir = crate::repo_root().join("target/images");
    for image in &IMAGES {
        let (recipe, _) = dockerfile_recipe(image.dockerfile);
        let img = unpack(&dir.join(image.archive), &dir.join("unpacked").join(image.name));
        let what = format!("{} ({})", image.archive, image.name);
        assert_eq!(img.tags, [chart_reference(image)], "{what}: tags");
        let c = &img.config["config"];
        assert_eq!(c["User"].as_str().unwrap_or(""), recipe.user, "{what}: user");
        assert_eq!(c["Entrypoint"], serde_json::json!(recipe.entrypoint), "{what}: entrypoint");
        assert!(c["Cmd"].is_null(), "{what}: a Cmd would become the entrypoint's arguments: {}", c["Cmd"]);
        assert_eq!(img.config["os"], "linux", "{what}");
        let path = c["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|e| e.starts_with("PATH="));
        assert!(path.is_some_and(|p| p.contains("/usr/bin")), "{what}: PATH {path:?}");
        for (src, dest) in &recipe.copies {
            let inside = img.root.join(dest.trim_start_matches('/'));
            assert!(inside.is_file(), "{what}: {dest} missing");
            if !src.starts_with("target/") {
                assert_eq!(
                    std::fs::read(&inside).unwrap(),
                    read(src).into_bytes(),
                    "{what}: {dest} differs from {src}"
                );
            }
        }
        let entry = &recipe.entrypoint[0];
        assert!(img.root.join(entry.trim_start_matches('/')).is_file(), "{what}: entrypoint {entry} missing");
        let dpkg = in_image(&img.root, "", &["dpkg-query", "-W", "-f", "${Package}=${Version}\n"]);
        for package in &recipe.packages {
            let installed = match package.split_once('=') {
                Some(_) => dpkg.lines().any(|l| l == package),
                None => dpkg.lines().any(|l| l.split('=').next() == Some(package)),
            };
            assert!(installed, "{what}: {package} not installed");
        }
        match image.name {
            "ferrolb" => {
                let version = in_image(&img.root, &recipe.user, &["/usr/bin/ferrolb", "--version"]);
                assert!(says_version(version.trim(), "ferrolb"), "{what}: {version}");
                let help = in_image(&img.root, &recipe.user, &["/usr/bin/ferrolb", "controller", "--help"]);
                assert!(help.contains("--webhook-port"), "{what}: {help}");
                assert!(img.root.join("etc/ssl/certs/ca-certificates.crt").is_file(), "{what}: no CA bundle");
                assert_eq!(recipe.user, "65534:65534", "the chart runs the controller as 65534");
            }
            "frr" => {
                // The chart's frr-agent container names its command without a path.
                let help = in_image(&img.root, "", &["frr-agent", "--help"]);
                assert!(help.contains("Usage: frr-agent"), "{what}: {help}");
                let bgpd = in_image(&img.root, "", &["/usr/lib/frr/bgpd", "--version"]);
                let upstream = script_frr_version().split('-').next().unwrap().to_string();
                assert!(bgpd.starts_with(&format!("bgpd version {upstream}")), "{what}: {bgpd}");
                assert!(in_image(&img.root, "", &["/usr/bin/vtysh", "--help"]).contains("vtysh"), "{what}");
                in_image(&img.root, "", &["/bin/sh", "-n", entry]);
                let (owner, frr_uid) = owner_and_uid(&img.root, "/etc/frr", "frr");
                assert_eq!(owner, frr_uid, "{what}: /etc/frr must stay FRR's");
            }
            other => unreachable!("{other}"),
        }
    }
}

/// A containerd of the test's own (its root, state and socket in a temporary directory, the CRI
/// plugin off), stopped and removed when dropped.
struct Containerd {
    dir: PathBuf,
    process: std::process::Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = std::env::temp_dir().join(format!("ferrolb-containerd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n"
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let process = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        let c = Containerd { dir, process };
        let up = crate::frr_lab::wait_for(std::time::Duration::from_secs(20), || {
            c.ctr().args(["version"]).output().is_ok_and(|o| o.status.success())
        });
        assert!(
            up.is_some(),
            "containerd did not start: {}",
            std::fs::read_to_string(c.dir.join("log")).unwrap_or_default()
        );
        c
    }

    /// `ctr` against this containerd, in the namespace the kubelet uses.
    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.dir.join("containerd.sock")).args(["--namespace", "k8s.io"]);
        cmd
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        // Snapshots may still be mounted under the root if a container was left behind.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r umount -l",
                self.dir.display()
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn containerd_imports_both_archives_as_the_air_gapped_install_does() {
    if let Some(why) = archives_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let present = |p: &str| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    if !present("containerd") || !present("ctr") {
        println!("skipped: containerd and ctr missing (apt-get install containerd)");
        return;
    }
    let containerd = Containerd::start();
    let dir = crate::repo_root().join("target/images");
    for image in &IMAGES {
        run(containerd.ctr().args(["images", "import"]).arg(dir.join(image.archive)));
    }
    let listed = run(containerd.ctr().args(["images", "ls", "-q"]));
    for image in &IMAGES {
        assert!(
            listed.lines().any(|l| l == chart_reference(image)),
            "{} not imported as the chart names it: {listed}",
            image.archive
        );
    }
    // Run in a real runtime (runc): the ferrolb image as its user, the FRR image's agent.
    let ferrolb = chart_reference(&IMAGES[0]);
    let id = format!("ferrolb-img-{}", std::process::id());
    let out = run(containerd.ctr().args([
        "run",
        "--rm",
        &ferrolb,
        &id,
        "sh",
        "-c",
        "id -u; /usr/bin/ferrolb --version",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(matches!(lines[..], ["65534", v] if says_version(v, "ferrolb")), "{out}");
    let frr = chart_reference(&IMAGES[1]);
    let script = "frr-agent --version; /usr/lib/frr/bgpd --version | head -n1";
    let out = run(containerd.ctr().args(["run", "--rm", &frr, &id, "sh", "-c", script]));
    let upstream = script_frr_version().split('-').next().unwrap().to_string();
    let lines: Vec<&str> = out.lines().collect();
    let bgpd = format!("bgpd version {upstream}");
    assert!(matches!(lines[..], [v, b] if says_version(v, "frr-agent") && b == bgpd), "{out}");
}

/// `binary`'s `--version` line for this workspace's version: `ferrolb 0.1.0 (commit …)`. The
/// commit is the image's own (an archive built before the last commit still holds this version).
fn says_version(line: &str, binary: &str) -> bool {
    line.starts_with(&format!("{binary} {} (commit ", env!("CARGO_PKG_VERSION"))) && line.ends_with(')')
}
