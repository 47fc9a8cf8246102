//! A Python interpreter that can import what a test needs.

use std::process::Command;

/// A `python3` command that can import `modules`: the system's when it can, else one whose
/// `PYTHONPATH` holds them, installed once with `pip install --target` into slimnet's cache
/// (`slimnet_core::data::cache_dir()/python`), so a test needs no manual set-up.
///
/// # Panics
/// In one line, when `python3` or pip is missing or the install fails: a test that needs a
/// tool it cannot fetch fails, it does not pass silently.
pub fn python_with(modules: &[&str]) -> Command {
    let import = format!("import {}", modules.join(", "));
    let probe = |path: Option<&std::path::Path>| {
        let mut c = Command::new("python3");
        c.args(["-c", &import]);
        if let Some(p) = path {
            c.env("PYTHONPATH", p);
        }
        c.output()
            .unwrap_or_else(|e| panic!("this test needs python3 ({e}); install Python 3"))
            .status
            .success()
    };
    if probe(None) {
        return Command::new("python3");
    }
    let target = slimnet_core::data::cache_dir().join("python");
    if !probe(Some(&target)) {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&target)
            .args(modules)
            .output()
            .unwrap_or_else(|e| panic!("could not run pip ({e}); install python3-pip"));
        assert!(
            out.status.success() && probe(Some(&target)),
            "`pip install --target {} {}` failed: {}",
            target.display(),
            modules.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", target);
    c
}
