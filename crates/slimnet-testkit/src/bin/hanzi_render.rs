//! Renders the printed Chinese characters of `slimnet::core::data::hanzi` into the cache and
//! says how long it took, to measure the renderer.
//!
//! ```text
//! cargo run --release -p slimnet-testkit --bin hanzi_render -- [--classes N] [--seed N]
//! ```
//! `--classes` defaults to all 3,755 level-1 characters. A rendering already in the cache is
//! not rendered again; to time a cold run, point `SLIMNET_DATA_DIR` at a folder that has the
//! fonts but no `hanzi/` rendering (or pick a `--seed` not rendered before). Prints
//! `hanzi_render classes=<n> train=<n> validation=<n> test=<n> seconds=<f> megabytes=<f>`.

use std::time::Instant;

use slimnet_core::data::hanzi::{self, HanziConfig, LEVEL1_CLASSES};
use slimnet_testkit::{Args, Res};

const USAGE: &str = "usage: hanzi_render [--classes N] [--seed N]";

fn main() {
    slimnet_testkit::run(hanzi_render);
}

fn hanzi_render() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let config = HanziConfig {
        classes: args.get("classes", LEVEL1_CLASSES)?,
        seed: args.get("seed", 0u64)?,
        ..HanziConfig::full()
    };
    args.finish()?;

    let start = Instant::now();
    let dir = hanzi::render(&config)?;
    let seconds = start.elapsed().as_secs_f64();

    let mut bytes = 0u64;
    for entry in std::fs::read_dir(&dir)? {
        bytes += entry?.metadata()?.len();
    }
    let n = config.classes;
    println!(
        "hanzi_render classes={n} train={} validation={} test={} seconds={seconds:.1} megabytes={:.1}",
        n * config.train_per_class,
        n * config.val_per_class,
        n * config.test_per_class,
        bytes as f64 / 1e6,
    );
    println!("folder {}", dir.display());
    Ok(())
}
