//! Writes a synthetic image folder of a given size, one sub-folder per class, to measure how
//! slimnet streams a data set larger than it keeps in memory.
//!
//! ```text
//! cargo run --release -p slimnet-testkit --bin image_folder -- --out DIR [--megabytes N]
//!     [--classes N] [--size N] [--seed N]
//! ```
//! Each class is a pattern of stripes at its own angle and spacing under colour noise, saved
//! as `--size`-square RGB JPEGs (quality 90) until the files add up to `--megabytes`. A
//! classifier can learn the classes, and JPEG noise keeps the files near their raw size.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use slimnet_testkit::{Args, Res};

const USAGE: &str =
    "usage: image_folder --out DIR [--megabytes N] [--classes N] [--size N] [--seed N]";

fn main() {
    slimnet_testkit::run(image_folder);
}

fn image_folder() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let out: PathBuf = args.get_opt("out")?.ok_or("--out DIR is required")?;
    let megabytes = args.get("megabytes", 1024u64)?;
    let classes = args.get("classes", 10usize)?;
    let size = args.get("size", 256u32)?;
    let seed = args.get("seed", 1u64)?;
    args.finish()?;
    if classes == 0 || size < 8 {
        return Err("--classes must be at least 1 and --size at least 8".into());
    }
    for c in 0..classes {
        std::fs::create_dir_all(out.join(format!("class{c:02}")))?;
    }
    let target = megabytes << 20;
    let written = AtomicU64::new(0);
    let mut next = 0usize;
    // in rounds of 256 images, until the target is passed
    while written.load(Ordering::Relaxed) < target {
        (next..next + 256).into_par_iter().try_for_each(|i| {
            let bytes = write_one(&out, i, classes, size, seed)?;
            written.fetch_add(bytes, Ordering::Relaxed);
            Ok::<_, String>(())
        })?;
        next += 256;
        eprint!(
            "\r{} images, {} MB",
            next,
            written.load(Ordering::Relaxed) >> 20
        );
    }
    eprintln!();
    println!(
        "image_folder images={next} classes={classes} megabytes={}",
        written.load(Ordering::Relaxed) >> 20
    );
    Ok(())
}

/// Image `i` (class `i % classes`) as a JPEG; returns its size in bytes.
fn write_one(out: &Path, i: usize, classes: usize, size: u32, seed: u64) -> Result<u64, String> {
    let class = i % classes;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
    let angle = std::f32::consts::PI * class as f32 / classes as f32 + rng.random_range(-0.1..0.1);
    let period = 6.0 + 2.0 * (class % 4) as f32;
    let phase = rng.random_range(0.0..period);
    let (c, s) = (angle.cos(), angle.sin());
    let img = RgbImage::from_fn(size, size, |x, y| {
        let t = (x as f32 * c + y as f32 * s + phase) / period;
        let stripe = if t.fract() < 0.5 { 200.0 } else { 55.0 };
        let mut px = |v: f32| (v + rng.random_range(-40.0f32..40.0)).clamp(0.0, 255.0) as u8;
        Rgb([px(stripe), px(stripe * 0.8), px(255.0 - stripe)])
    });
    let path = out
        .join(format!("class{class:02}"))
        .join(format!("{i:07}.jpg"));
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&img)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes.len() as u64)
}
