//! `cargo xtask ui`: build the dashboard bundle (`ui/`, Leptos compiled to
//! WASM) into the directory the controller serves (`ui/dist`).
//!
//! rustup cannot add the `wasm32-unknown-unknown` target here (it
//! downloads a prebuilt std, and this machine's network is closed to it),
//! so the bundle is built with Debian's `rustc-web` compiler, which knows
//! the target, compiling std from Debian's `rust-web-src` sources with
//! `-Z build-std` (allowed on a stable compiler by `RUSTC_BOOTSTRAP=1`).
//! It gets its own target dir, `target/wasm`: a different compiler would
//! otherwise invalidate the native build's artifacts on every switch.
//!
//! Then, each step pinned so a bundle built today equals one built later:
//! `wasm-bindgen` (the CLI must be the exact version of the `wasm-bindgen`
//! crate in Cargo.lock, so it is `cargo install`ed from that version),
//! `wasm-opt -Oz` from npm's binaryen 132 (Debian's binaryen 108 emits
//! modules that crash at load on this compiler's reference types), file
//! names carrying a content hash (cached forever by browsers), an
//! `index.html` naming them (never cached), and gzip and brotli variants
//! the controller serves to browsers that accept them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::install;
use crate::process::{Result, exec, probe, step};
use crate::workspace;

/// Debian packages of the WASM compiler: the compiler, its cargo, the std
/// sources `-Z build-std` compiles, the LLVM tools and the linker
/// (`rust-lld` is a symlink to `lld-22`), clippy for linting the crate with
/// the same compiler, and brotli for precompressing.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-llvm",
    "lld-22",
    "rust-web-clippy",
    "brotli",
];

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "wasm-release";
const CRATE: &str = "conduit-ui";
const BINARYEN: &str = "132.0.0";

/// What rustc enables for wasm32 by default (LLVM's "generic" CPU): the
/// module uses these, so wasm-opt must accept them, and must not introduce
/// any other.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-bulk-memory-opt",
    "--enable-call-indirect-overlong",
    "--enable-multivalue",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-reference-types",
    "--enable-sign-ext",
];

/// The gzipped size the whole bundle must stay under: 600 kB.
const BUDGET_GZIP_BYTES: u64 = 600_000;

const USAGE: &str = "\
Usage: cargo xtask ui [--out-dir DIR] [--clippy]

Builds the dashboard (ui/) to WASM and writes the bundle where the
controller serves it (default ui/dist; the controller's --ui-dir).
Installs what is missing first: Debian's rustc-web toolchain, a pinned
wasm-bindgen-cli (cargo install) and wasm-opt (npm binaryen) under
target/tools.

  --out-dir DIR  write the bundle to DIR instead of ui/dist
  --clippy       lint the crate for wasm32 with clippy -D warnings instead of building
";

pub(crate) fn run(args: &[String]) -> Result {
    let mut out = default_out_dir();
    let mut clippy = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out-dir" => {
                let dir = it.next().ok_or("--out-dir needs a directory")?;
                out = PathBuf::from(dir);
            }
            "--clippy" => clippy = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    if clippy {
        return lint();
    }
    build(&out)
}

fn default_out_dir() -> PathBuf {
    workspace::root().join("ui").join("dist")
}

/// Builds the bundle into `ui/dist` when any of its sources is newer than
/// it (or it does not exist): what `demo` and `test` call.
pub(crate) fn ensure_built() -> Result {
    let out = default_out_dir();
    let built = modified(&out.join("index.html"));
    let newest = newest_source();
    match (built, newest) {
        (Some(b), Some(n)) if b >= n => {
            eprintln!("dashboard bundle in {} is up to date", out.display());
            Ok(())
        }
        _ => build(&out),
    }
}

/// What the bundle is made of: the crate, its pure-logic crate, the shared
/// JSON types, the page template and stylesheet, and the lock file.
fn newest_source() -> Option<SystemTime> {
    let root = workspace::root();
    let mut newest = None;
    for p in [
        "ui/src",
        "ui/chart/src",
        "ui/Cargo.toml",
        "ui/chart/Cargo.toml",
        "ui/index.html",
        "ui/style.css",
        "api/src",
        "api/Cargo.toml",
        "Cargo.lock",
    ] {
        newest_in(&root.join(p), &mut newest);
    }
    newest
}

fn newest_in(path: &Path, newest: &mut Option<SystemTime>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_in(&entry.path(), newest);
        }
    } else if let Some(m) = modified(path) {
        *newest = Some(newest.map_or(m, |n| n.max(m)));
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Pinned tools found or installed.
struct Tools {
    wasm_bindgen: PathBuf,
    wasm_opt: PathBuf,
}

fn toolchain() -> Result<Tools> {
    let started = Instant::now();
    step("WASM toolchain (Debian rustc-web, wasm-bindgen-cli, binaryen)");
    install::apt(PACKAGES)?;
    check_compiler()?;
    let version = locked_version("wasm-bindgen")?;
    let wasm_bindgen = install::cargo_tool("wasm-bindgen-cli", &version, "wasm-bindgen")?;
    let wasm_opt = install::npm_tool("binaryen", BINARYEN, "wasm-opt")?;
    took("toolchain", started);
    Ok(Tools {
        wasm_bindgen,
        wasm_opt,
    })
}

/// `-Z build-std` needs the std sources of exactly this compiler where
/// `rustc --print sysroot` says, and a working `rust-lld`.
fn check_compiler() -> Result {
    let rustc = Path::new("/usr/bin/rustc");
    let targets = probe(Command::new(rustc).args(["--print", "target-list"])).unwrap_or_default();
    if !targets.lines().any(|t| t == TARGET) {
        return Err(format!(
            "/usr/bin/rustc does not know {TARGET}; is Debian's rustc-web installed?"
        ));
    }
    let sysroot = probe(Command::new(rustc).args(["--print", "sysroot"]))
        .ok_or("cannot run /usr/bin/rustc --print sysroot")?;
    let src = Path::new(&sysroot).join("lib/rustlib/src/rust");
    if !src.join("library/Cargo.lock").is_file() {
        return Err(format!(
            "the std sources are not at {} (package rust-web-src); reinstall it with \
             `apt-get install --reinstall rust-web-src`",
            src.display()
        ));
    }
    let lld = Path::new("/usr/bin/rust-lld");
    if std::fs::canonicalize(lld).is_err() {
        return Err(format!(
            "{} does not resolve to a linker; install lld-22",
            lld.display()
        ));
    }
    Ok(())
}

/// The version of `krate` in Cargo.lock: the CLI tools must match it.
fn locked_version(krate: &str) -> Result<String> {
    let lock_path = workspace::root().join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{krate}\"") {
            let version = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'));
            if let Some(v) = version {
                return Ok(v.to_string());
            }
        }
    }
    Err(format!(
        "{krate} is not in Cargo.lock; is ui/ a workspace member?"
    ))
}

/// Cargo and rustc from Debian for the wasm build, whatever rustup puts
/// first in `PATH`, with the std-from-source flags.
fn wasm_cargo(subcommand: &str) -> Command {
    let mut cmd = Command::new("/usr/bin/cargo");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![PathBuf::from("/usr/bin")];
    paths.extend(std::env::split_paths(&path));
    cmd.current_dir(workspace::root())
        .env("PATH", std::env::join_paths(paths).unwrap_or(path))
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTDOC", "/usr/bin/rustdoc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .args([subcommand, "-p", CRATE, "-Z", "build-std=std,panic_abort"])
        .args(["--target", TARGET, "--profile", PROFILE, "--target-dir"])
        .arg(wasm_target_dir());
    cmd
}

fn wasm_target_dir() -> PathBuf {
    workspace::target_dir().join("wasm")
}

/// `cargo xtask ui --clippy`: the dashboard crate linted as it is built.
pub(crate) fn lint() -> Result {
    install::apt(PACKAGES)?;
    check_compiler()?;
    step("clippy -D warnings on conduit-ui (wasm32)");
    let mut cmd = wasm_cargo("clippy");
    cmd.args(["--", "-D", "warnings"]);
    exec(&mut cmd)
}

fn build(out: &Path) -> Result {
    let tools = toolchain()?;

    let started = Instant::now();
    step(&format!(
        "cargo build -p {CRATE} for {TARGET} (Debian rustc-web, -Z build-std)"
    ));
    exec(&mut wasm_cargo("build"))?;
    took("cargo build", started);

    let staging = wasm_target_dir().join("bundle");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let wasm = wasm_target_dir()
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{CRATE}.wasm"));

    let started = Instant::now();
    step("wasm-bindgen --target web");
    exec(
        Command::new(&tools.wasm_bindgen)
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                "app",
                "--out-dir",
            ])
            .arg(&staging)
            .arg(&wasm),
    )?;
    took("wasm-bindgen", started);

    let started = Instant::now();
    step("wasm-opt -Oz");
    let bg = staging.join("app_bg.wasm");
    let optimized = staging.join("app_bg.opt.wasm");
    exec(
        Command::new(&tools.wasm_opt)
            .arg("-Oz")
            .args(WASM_FEATURES)
            .arg(&bg)
            .arg("-o")
            .arg(&optimized),
    )?;
    std::fs::rename(&optimized, &bg).map_err(|e| e.to_string())?;
    took("wasm-opt", started);

    let started = Instant::now();
    step(&format!("writing the bundle to {}", out.display()));
    let ui = workspace::root().join("ui");
    let assets = [
        ("js", hashed(&staging.join("app.js"), "conduit-ui", "js")?),
        ("wasm", hashed(&bg, "conduit-ui", "wasm")?),
        ("css", hashed(&ui.join("style.css"), "style", "css")?),
    ];
    let template = read(&ui.join("index.html"))?;
    let index = assets.iter().fold(
        String::from_utf8_lossy(&template).into_owned(),
        |page, (slot, (name, _))| page.replace(&format!("{{{{{slot}}}}}"), name),
    );
    publish(out, &assets, index.as_bytes())?;
    took("hash, index.html, gzip + brotli", started);
    report_sizes(out)
}

/// The file's bytes and a content-addressed name for them,
/// `STEM-HASH.EXT`.
fn hashed(path: &Path, stem: &str, ext: &str) -> Result<(String, Vec<u8>)> {
    let bytes = read(path)?;
    Ok((format!("{stem}-{:016x}.{ext}", fnv1a(&bytes)), bytes))
}

/// FNV-1a, 64 bits: plenty to tell bundle versions apart, and std-only.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes the hashed assets, then `index.html` (renamed into place, so a
/// page load sees the old bundle or the new one, never half of each),
/// then removes what the new index no longer names.
fn publish(out: &Path, assets: &[(&str, (String, Vec<u8>))], index: &[u8]) -> Result {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut keep: Vec<String> = Vec::new();
    for (_, (name, bytes)) in assets {
        let path = out.join(name);
        write(&path, bytes)?;
        compress(&path)?;
        keep.extend([name.clone(), format!("{name}.gz"), format!("{name}.br")]);
    }
    let staged = out.join(".index.html.new");
    write(&staged, index)?;
    compress(&staged)?;
    for ext in ["", ".gz", ".br"] {
        let from = out.join(format!(".index.html.new{ext}"));
        let to = out.join(format!("index.html{ext}"));
        std::fs::rename(&from, &to)
            .map_err(|e| format!("cannot move {} into place: {e}", to.display()))?;
        keep.push(format!("index.html{ext}"));
    }
    for entry in std::fs::read_dir(out).map_err(|e| e.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && entry.path().is_file() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// `FILE.gz` and `FILE.br` next to `FILE`, at the strongest settings: they
/// are made once and served many times.
fn compress(path: &Path) -> Result {
    exec(
        Command::new("gzip")
            .args(["-9", "-n", "-k", "-f"])
            .arg(path),
    )?;
    exec(
        Command::new("brotli")
            .args(["-q", "11", "-k", "-f"])
            .arg(path),
    )
}

fn report_sizes(out: &Path) -> Result {
    let mut total_gz = 0;
    let mut lines = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| !matches!(p.extension().and_then(OsStr::to_str), Some("gz" | "br")))
        .collect();
    entries.sort();
    for path in entries {
        let size = |ext: &str| {
            let mut p = path.clone().into_os_string();
            p.push(ext);
            std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len())
        };
        let (raw, gz, br) = (size(""), size(".gz"), size(".br"));
        total_gz += gz;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        lines.push(format!(
            "  {name:<40} {:>8} raw {:>8} gzip {:>8} brotli",
            kb(raw),
            kb(gz),
            kb(br)
        ));
    }
    eprintln!("\nbundle in {}:\n{}", out.display(), lines.join("\n"));
    eprintln!(
        "  total gzipped: {} (budget {})",
        kb(total_gz),
        kb(BUDGET_GZIP_BYTES)
    );
    if total_gz > BUDGET_GZIP_BYTES {
        return Err(format!(
            "the dashboard bundle is {} gzipped, over its budget of {}",
            kb(total_gz),
            kb(BUDGET_GZIP_BYTES)
        ));
    }
    Ok(())
}

fn kb(bytes: u64) -> String {
    format!("{:.1} kB", bytes as f64 / 1000.0)
}

fn took(what: &str, since: Instant) {
    eprintln!("({what} took {:.1}s)", since.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_differ_by_content_and_are_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a(b"bundle 1"), fnv1a(b"bundle 2"));
    }

    #[test]
    fn the_wasm_bindgen_version_comes_from_the_lock_file() {
        let v = locked_version("wasm-bindgen").expect("ui depends on wasm-bindgen");
        assert!(v.starts_with("0.2."), "{v}");
        assert!(locked_version("no-such-crate-anywhere").is_err());
    }
}
