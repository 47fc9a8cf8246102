//! Printed Chinese characters rendered from the CJK fonts Debian packages carry, distorted to
//! look handwritten and scanned: the classification data of the thesis's character CNN.
//!
//! The classes are the 3,755 level-1 characters of GB2312 (the class set of the CASIA and
//! ICDAR handwriting benchmarks), in GB2312 order; [`HanziConfig::quick`] takes the first 200.
//! Each sample draws one font's glyph (fitted into the image, centred by its ink) through a
//! random affine map (rotation, shear, anisotropic scale, shift) and a smooth elastic warp,
//! with strokes thickened or thinned, then blur, contrast and noise; white ink on black, as
//! MNIST. The training and validation parts use the [`FontRole::Train`] fonts; the test part
//! only the [`FontRole::Test`] fonts, so it measures how the network carries over to a style it
//! never saw.
//!
//! Samples are a pure function of the configuration (the seed, the part, the class and the
//! sample's index), rendered in parallel and cached as IDX files under
//! `cache_dir()/hanzi/<configuration>`. Fonts not installed are fetched into the cache without
//! root (`apt-get download`, see [`HANZI_FONTS`]); their SHA-256 digests are checked.
//!
//! ```
//! use slimnet_core::data::hanzi::{hanzi, HanziConfig, Part};
//! let config = HanziConfig {
//!     classes: 3,
//!     train_per_class: 2,
//!     val_per_class: 1,
//!     test_per_class: 1,
//!     ..HanziConfig::quick()
//! };
//! let train = hanzi(&config, Part::Train)?;
//! assert_eq!(train.inputs.shape(), &[6, 1, 32, 32]);
//! assert_eq!(train.labels, [0, 0, 1, 1, 2, 2]);
//! assert_eq!(train.classes, 3);
//! # Ok::<(), slimnet_core::Error>(())
//! ```

use std::path::PathBuf;
use std::sync::Mutex;

use ab_glyph::{point, Font, FontVec, PxScale};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::idx::{read_idx, write_idx, IdxArray};
use super::Dataset;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The 3,755 level-1 characters of GB2312 in code order (rows 16 to 55), as Python's codec
/// decodes bytes `0xB0A1..=0xD7F9`.
const LEVEL1: &str = include_str!("gb2312_level1.txt");

/// Number of level-1 GB2312 characters: the full class count.
pub const LEVEL1_CLASSES: usize = 3755;

/// The level-1 GB2312 characters, in code order (class `i` is the `i`-th).
pub fn level1_chars() -> Vec<char> {
    LEVEL1.trim_end().chars().collect()
}

/// Which part of the data a font draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FontRole {
    /// The training and validation parts.
    Train,
    /// The test part only.
    Test,
}

/// A font file of a Debian package.
#[derive(Debug, Clone, Copy)]
pub struct HanziFont {
    /// A short name.
    pub name: &'static str,
    /// The Debian package that carries it.
    pub package: &'static str,
    /// Its folder when the package is installed.
    pub dir: &'static str,
    /// Its file name in that folder.
    pub file: &'static str,
    /// SHA-256 of the file.
    pub sha256: &'static str,
    /// The face inside a collection (`.ttc`): the simplified-Chinese one.
    pub face: u32,
    /// The part it draws.
    pub role: FontRole,
}

/// The fonts: sans (WenQuanYi Micro Hei and Zen Hei), Ming and Song (AR PL UMing, AR PL
/// SungtiL GB) and Kai (AR PL UKai) for training; Kai faces for the test (AR PL KaitiM GB,
/// of the same family line as UKai, and LXGW WenKai, a modern handwriting-like Kai).
pub const HANZI_FONTS: [HanziFont; 7] = [
    HanziFont {
        name: "wqy-microhei",
        package: "fonts-wqy-microhei",
        dir: "/usr/share/fonts/truetype/wqy",
        file: "wqy-microhei.ttc",
        sha256: "2420e8078af796b19a3f6ef13de527a1a91c1e7171eea115926c614ced1009b3",
        face: 0,
        role: FontRole::Train,
    },
    HanziFont {
        name: "wqy-zenhei",
        package: "fonts-wqy-zenhei",
        dir: "/usr/share/fonts/truetype/wqy",
        file: "wqy-zenhei.ttc",
        sha256: "79c18ebe7b811951e8311bad7103ebeae8c337ed9988ea69e8a78a66cfe029b9",
        face: 0,
        role: FontRole::Train,
    },
    HanziFont {
        name: "uming",
        package: "fonts-arphic-uming",
        dir: "/usr/share/fonts/truetype/arphic",
        file: "uming.ttc",
        sha256: "fe952e55617275142d9cefd4d79eade4df446517b0478b2567d9bc7df49f70e2",
        face: 0,
        role: FontRole::Train,
    },
    HanziFont {
        name: "gbsn00lp",
        package: "fonts-arphic-gbsn00lp",
        dir: "/usr/share/fonts/truetype/arphic-gbsn00lp",
        file: "gbsn00lp.ttf",
        sha256: "705ec2dba81eaee1208e4ed5d3ff23ab259292e8e0e163ea3de297ef1317007a",
        face: 0,
        role: FontRole::Train,
    },
    HanziFont {
        name: "ukai",
        package: "fonts-arphic-ukai",
        dir: "/usr/share/fonts/truetype/arphic",
        file: "ukai.ttc",
        sha256: "cfc758e69386a21bade8cb3b373fda20d7f2fac6e8904ced2ded98588b63e274",
        face: 0,
        role: FontRole::Train,
    },
    HanziFont {
        name: "gkai00mp",
        package: "fonts-arphic-gkai00mp",
        dir: "/usr/share/fonts/truetype/arphic-gkai00mp",
        file: "gkai00mp.ttf",
        sha256: "61519fb9bdda4a1a3aa02a12cbb76c2ef897ce879775d7ea2265d0a65fe54d16",
        face: 0,
        role: FontRole::Test,
    },
    HanziFont {
        name: "lxgw-wenkai",
        package: "fonts-lxgw-wenkai",
        dir: "/usr/share/fonts/truetype/lxgw-wenkai",
        file: "LXGWWenKai-Regular.ttf",
        sha256: "bbf534b0ca093928f94d1782855e65a19a32cde82b075d495d072025521953c8",
        face: 0,
        role: FontRole::Test,
    },
];

/// A part of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Training samples (training fonts).
    Train,
    /// Validation samples: other draws of the training fonts.
    Validation,
    /// Test samples: the test fonts only.
    Test,
}

impl Part {
    const ALL: [Part; 3] = [Part::Train, Part::Validation, Part::Test];

    fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Validation => "val",
            Part::Test => "test",
        }
    }

    fn role(self) -> FontRole {
        match self {
            Part::Train | Part::Validation => FontRole::Train,
            Part::Test => FontRole::Test,
        }
    }
}

/// What to render. Each part holds its count of samples of every class, class by class,
/// sample `i` of a class drawing the part's font `i % fonts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HanziConfig {
    /// The first `classes` level-1 characters (1 to [`LEVEL1_CLASSES`]).
    pub classes: usize,
    /// Image side in pixels (16 to 128).
    pub size: usize,
    /// Training samples per class.
    pub train_per_class: usize,
    /// Validation samples per class.
    pub val_per_class: usize,
    /// Test samples per class.
    pub test_per_class: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl HanziConfig {
    /// All 3,755 classes, 32x32, 40 training, 5 validation and 10 test samples per class
    /// (150,200 training images).
    pub fn full() -> Self {
        Self {
            classes: LEVEL1_CLASSES,
            size: 32,
            train_per_class: 40,
            val_per_class: 5,
            test_per_class: 10,
            seed: 0,
        }
    }

    /// The first 200 classes, otherwise as [`full`](Self::full): for quick runs and CI.
    pub fn quick() -> Self {
        Self {
            classes: 200,
            ..Self::full()
        }
    }

    fn per_class(&self, part: Part) -> usize {
        match part {
            Part::Train => self.train_per_class,
            Part::Validation => self.val_per_class,
            Part::Test => self.test_per_class,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::Invalid(format!("hanzi config: {reason}")));
        if self.classes == 0 || self.classes > LEVEL1_CLASSES {
            return bad(format!(
                "classes {} not in 1..={LEVEL1_CLASSES}",
                self.classes
            ));
        }
        if !(16..=128).contains(&self.size) {
            return bad(format!("size {} not in 16..=128", self.size));
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            return bad("training and test parts need at least one sample per class".into());
        }
        // the largest part's bytes, kept well inside what the IDX reader accepts (1 GiB)
        let most = Part::ALL
            .iter()
            .map(|&p| self.per_class(p))
            .max()
            .unwrap_or(0);
        let bytes =
            (self.classes.checked_mul(most)).and_then(|n| n.checked_mul(self.size * self.size));
        if bytes.is_none_or(|b| b > 1 << 30) {
            return bad(format!(
                "{} classes x {most} samples of {}x{} exceed 1 GiB in one part",
                self.classes, self.size, self.size
            ));
        }
        Ok(())
    }

    /// The cache folder's name: every field, and the renderer's version.
    fn key(&self) -> String {
        format!(
            "v1-c{}-s{}-n{}-{}-{}-seed{}",
            self.classes,
            self.size,
            self.train_per_class,
            self.val_per_class,
            self.test_per_class,
            self.seed
        )
    }
}

/// The normalisation stored with a rendering: the training images' pixel mean and deviation.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    mean: f32,
    std: f32,
    chars: String,
}

/// Renders the data of `config` into the cache unless it is there already, and returns its
/// folder (`{train,val,test}-{images,labels}.idx` and `meta.json`, written last).
///
/// # Errors
/// A configuration out of range, a font that cannot be fetched (the message gives the
/// `apt-get install` that would do), a font without one of the characters, or I/O errors.
pub fn render(config: &HanziConfig) -> Result<PathBuf> {
    config.check()?;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = super::cache_dir().join("hanzi").join(config.key());
    if dir.join("meta.json").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let chars: Vec<char> = level1_chars().into_iter().take(config.classes).collect();
    let fonts = load_fonts()?;
    let bar = ProgressBar::new((config.classes * Part::ALL.len()) as u64).with_style(
        ProgressStyle::with_template("rendering {msg} {bar:30} {pos}/{len} classes ({eta})")
            .expect("a valid template"),
    );
    let mut stats = (0f64, 0f64, 0usize);
    for part in Part::ALL {
        bar.set_message(part.name());
        let faces: Vec<&Loaded> = fonts.iter().filter(|f| f.role == part.role()).collect();
        let n = config.per_class(part);
        let images: Vec<Vec<u8>> = chars
            .par_iter()
            .enumerate()
            .map(|(class, &ch)| {
                let glyphs = faces
                    .iter()
                    .map(|f| f.canvas(ch))
                    .collect::<Result<Vec<_>>>()?;
                let mut out = Vec::with_capacity(n * config.size * config.size);
                for i in 0..n {
                    let mut rng =
                        ChaCha8Rng::seed_from_u64(sample_seed(config.seed, part, class, i));
                    out.extend(distort(&glyphs[i % glyphs.len()], config.size, &mut rng));
                }
                bar.inc(1);
                Ok(out)
            })
            .collect::<Result<_>>()?;
        let data: Vec<u8> = images.concat();
        if part == Part::Train {
            let sum: f64 = data.iter().map(|&p| p as f64 / 255.0).sum();
            let sq: f64 = data.iter().map(|&p| (p as f64 / 255.0).powi(2)).sum();
            stats = (sum, sq, data.len());
        }
        let count = config.classes * n;
        write_idx(
            dir.join(format!("{}-images.idx", part.name())),
            &IdxArray {
                dims: vec![count, config.size, config.size],
                data,
            },
        )?;
        // labels are class indices, which do not all fit a byte: two bytes, big-endian
        let labels: Vec<u8> = (0..config.classes)
            .flat_map(|c| std::iter::repeat_n(c as u16, n))
            .flat_map(|c| c.to_be_bytes())
            .collect();
        write_idx(
            dir.join(format!("{}-labels.idx", part.name())),
            &IdxArray {
                dims: vec![count, 2],
                data: labels,
            },
        )?;
    }
    bar.finish_and_clear();
    let (sum, sq, len) = stats;
    let mean = sum / len as f64;
    let meta = Meta {
        mean: mean as f32,
        std: (sq / len as f64 - mean * mean).max(1e-12).sqrt() as f32,
        chars: chars.iter().collect(),
    };
    let tmp = dir.join("meta.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&meta).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, dir.join("meta.json"))?;
    Ok(dir)
}

/// A part of the data of `config` (rendered on first use, see [`render`]) as `[N, 1, size,
/// size]` inputs normalised with the training images' pixel mean and deviation, and class
/// labels (class `i` is the `i`-th of [`level1_chars`]).
///
/// # Errors
/// As [`render`], or cache files that do not read back.
pub fn hanzi(config: &HanziConfig, part: Part) -> Result<Dataset> {
    let dir = render(config)?;
    let bad = |path: &std::path::Path, reason: String| Error::Data {
        path: path.display().to_string(),
        reason,
    };
    let meta_path = dir.join("meta.json");
    let meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path)?)
        .map_err(|e| bad(&meta_path, e.to_string()))?;
    let images = read_idx(dir.join(format!("{}-images.idx", part.name())))?;
    let labels_path = dir.join(format!("{}-labels.idx", part.name()));
    let labels = read_idx(&labels_path)?;
    let (n, s) = (config.classes * config.per_class(part), config.size);
    if images.dims != [n, s, s] || labels.dims != [n, 2] {
        return Err(bad(
            &dir,
            format!(
                "images {:?} and labels {:?} do not match the configuration",
                images.dims, labels.dims
            ),
        ));
    }
    let x: Vec<f32> = images
        .data
        .iter()
        .map(|&p| (p as f32 / 255.0 - meta.mean) / meta.std)
        .collect();
    let inputs = Tensor::from_shape_vec(vec![n, 1, s, s], x).expect("dims checked");
    let labels: Vec<usize> = labels
        .data
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .collect();
    Dataset::new(inputs, labels, config.classes).map_err(|e| bad(&labels_path, e.to_string()))
}

/// A font read into memory.
struct Loaded {
    name: &'static str,
    role: FontRole,
    font: FontVec,
}

/// Reads every font of [`HANZI_FONTS`], fetching the packages not installed.
fn load_fonts() -> Result<Vec<Loaded>> {
    HANZI_FONTS
        .iter()
        .map(|f| {
            let dir = super::deb::fetch_deb_files(
                f.package,
                f.dir,
                &[(f.file, f.sha256)],
                &format!("fonts/{}", f.package),
                &format!("font {}", f.name),
            )?;
            let path = dir.join(f.file);
            let bytes = std::fs::read(&path)?;
            let font = FontVec::try_from_vec_and_index(bytes, f.face).map_err(|e| Error::Data {
                path: path.display().to_string(),
                reason: format!("not a font ({e})"),
            })?;
            Ok(Loaded {
                name: f.name,
                role: f.role,
                font,
            })
        })
        .collect()
}

/// Side of the canvas a glyph is drawn on before it is distorted.
const CANVAS: usize = 64;

impl Loaded {
    /// The glyph of `ch` as ink coverage on a `CANVAS`-square canvas, its larger side filling
    /// nine tenths of it, centred by its bounds.
    fn canvas(&self, ch: char) -> Result<Vec<f32>> {
        let missing = |what: &str| Error::Data {
            path: format!("font {}", self.name),
            reason: format!("{what} for {ch} (U+{:04X})", ch as u32),
        };
        let id = self.font.glyph_id(ch);
        if id.0 == 0 {
            return Err(missing("no glyph"));
        }
        let probe = 100.0;
        let o = (self.font)
            .outline_glyph(id.with_scale_and_position(PxScale::from(probe), point(0.0, 0.0)))
            .ok_or_else(|| missing("an empty glyph"))?;
        let b = o.px_bounds();
        let side = b.width().max(b.height()).max(1.0);
        let scale = probe * 0.9 * CANVAS as f32 / side;
        let o = (self.font)
            .outline_glyph(id.with_scale_and_position(PxScale::from(scale), point(0.0, 0.0)))
            .ok_or_else(|| missing("an empty glyph"))?;
        let b = o.px_bounds();
        let ox = ((CANVAS as f32 - b.width()) / 2.0).floor().max(0.0) as usize;
        let oy = ((CANVAS as f32 - b.height()) / 2.0).floor().max(0.0) as usize;
        let mut canvas = vec![0f32; CANVAS * CANVAS];
        o.draw(|x, y, c| {
            let (x, y) = (x as usize + ox, y as usize + oy);
            if x < CANVAS && y < CANVAS {
                canvas[y * CANVAS + x] = c.clamp(0.0, 1.0);
            }
        });
        Ok(canvas)
    }
}

/// The seed of sample `i` of `class` in `part`: the configuration's seed and the sample's
/// place mixed by SplitMix64 steps, so that no two samples share a stream.
fn sample_seed(seed: u64, part: Part, class: usize, i: usize) -> u64 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let p = Part::ALL.iter().position(|&q| q == part).unwrap_or(0) as u64;
    mix(mix(mix(mix(seed) ^ p) ^ class as u64) ^ i as u64)
}

/// 3x3 maximum (`grow`) or minimum of the canvas: strokes about one canvas pixel thicker or
/// thinner on each side.
fn morph(g: &[f32], grow: bool) -> Vec<f32> {
    let n = CANVAS as isize;
    let mut out = vec![0f32; g.len()];
    for y in 0..n {
        for x in 0..n {
            let mut v = if grow { 0f32 } else { 1f32 };
            for (dy, dx) in (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (dy, dx))) {
                let (yy, xx) = (y + dy, x + dx);
                let p = if (0..n).contains(&yy) && (0..n).contains(&xx) {
                    g[(yy * n + xx) as usize]
                } else {
                    0.0
                };
                v = if grow { v.max(p) } else { v.min(p) };
            }
            out[(y * n + x) as usize] = v;
        }
    }
    out
}

/// The canvas at real coordinates, bilinear, zero outside.
fn sample(g: &[f32], x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| {
        if xi < 0.0 || yi < 0.0 || xi >= CANVAS as f32 || yi >= CANVAS as f32 {
            0.0
        } else {
            g[yi as usize * CANVAS + xi as usize]
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// One `size`-square sample of the glyph `g`: stroke width, affine map, elastic warp (a 4x4
/// grid of displacements, interpolated), 2x2 supersampling, blur, contrast and noise, as u8.
fn distort(g: &[f32], size: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let thick;
    let g = match rng.random_range(0..4) {
        0 => {
            thick = morph(g, true);
            &thick[..]
        }
        1 => {
            thick = morph(g, false);
            &thick[..]
        }
        _ => g,
    };
    let s = size as f32;
    let angle = rng.random_range(-0.18f32..0.18);
    let shear = rng.random_range(-0.2f32..0.2);
    let sx = rng.random_range(0.8f32..1.05);
    let sy = sx * rng.random_range(0.88f32..1.12);
    let (tx, ty) = (
        rng.random_range(-0.05f32..0.05) * s,
        rng.random_range(-0.05f32..0.05) * s,
    );
    // forward map (canvas-centred to output-centred): rotation * shear * scale; sample with its
    // inverse
    let (c, sn) = (angle.cos(), angle.sin());
    let m = [
        [c * sx, (c * shear - sn) * sy],
        [sn * sx, (sn * shear + c) * sy],
    ];
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let inv = [
        [m[1][1] / det, -m[0][1] / det],
        [-m[1][0] / det, m[0][0] / det],
    ];
    let k = CANVAS as f32 / s;
    let amp = rng.random_range(0.0f32..0.05) * s;
    let grid: Vec<(f32, f32)> = (0..16)
        .map(|_| (rng.random_range(-amp..=amp), rng.random_range(-amp..=amp)))
        .collect();
    let warp = |u: f32, v: f32| {
        // u, v in 0..1 over the image: bilinear over the 4x4 grid
        let (gx, gy) = (u.clamp(0.0, 1.0) * 3.0, v.clamp(0.0, 1.0) * 3.0);
        let (x0, y0) = ((gx as usize).min(2), (gy as usize).min(2));
        let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
        let p = |x: usize, y: usize| grid[y * 4 + x];
        let lerp =
            |a: (f32, f32), b: (f32, f32), t: f32| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        lerp(
            lerp(p(x0, y0), p(x0 + 1, y0), fx),
            lerp(p(x0, y0 + 1), p(x0 + 1, y0 + 1), fx),
            fy,
        )
    };
    let half = CANVAS as f32 / 2.0;
    let mut img = vec![0f32; size * size];
    for (i, row) in img.chunks_exact_mut(size).enumerate() {
        for (j, px) in row.iter_mut().enumerate() {
            let (dx, dy) = warp(j as f32 / s, i as f32 / s);
            let mut acc = 0.0;
            for (oy, ox) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                let x = j as f32 + ox - s / 2.0 - tx + dx;
                let y = i as f32 + oy - s / 2.0 - ty + dy;
                let cx = half + k * (inv[0][0] * x + inv[0][1] * y);
                let cy = half + k * (inv[1][0] * x + inv[1][1] * y);
                acc += sample(g, cx - 0.5, cy - 0.5);
            }
            *px = acc / 4.0;
        }
    }
    if rng.random_bool(0.4) {
        img = blur(&img, size);
    }
    let ink = rng.random_range(0.7f32..1.0);
    let paper = rng.random_range(0.0f32..0.2);
    let sigma = rng.random_range(0.0f32..0.06);
    img.iter()
        .map(|&v| {
            let noise = sigma * gaussian(rng);
            let p = paper + (ink - paper) * v + noise;
            (p.clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect()
}

/// A 3x3 binomial blur (edges repeated).
fn blur(img: &[f32], size: usize) -> Vec<f32> {
    let at = |y: isize, x: isize| {
        let c = |v: isize| v.clamp(0, size as isize - 1) as usize;
        img[c(y) * size + c(x)]
    };
    let w = [1.0, 2.0, 1.0];
    let mut out = vec![0f32; img.len()];
    for y in 0..size as isize {
        for x in 0..size as isize {
            let mut v = 0.0;
            for (dy, wy) in (-1..=1).zip(w) {
                for (dx, wx) in (-1..=1).zip(w) {
                    v += wy * wx * at(y + dy, x + dx);
                }
            }
            out[y as usize * size + x as usize] = v / 16.0;
        }
    }
    out
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level1_is_the_gb2312_level1_set() {
        let c = level1_chars();
        assert_eq!(c.len(), LEVEL1_CLASSES);
        assert_eq!((c[0], c[LEVEL1_CLASSES - 1]), ('啊', '座'));
        let distinct: std::collections::HashSet<_> = c.iter().collect();
        assert_eq!(distinct.len(), LEVEL1_CLASSES);
        assert!(c.iter().all(|&ch| ('\u{4E00}'..='\u{9FFF}').contains(&ch)));
    }

    #[test]
    fn test_fonts_are_not_training_fonts() {
        let (train, test): (Vec<&HanziFont>, Vec<&HanziFont>) =
            HANZI_FONTS.iter().partition(|f| f.role == FontRole::Train);
        assert!(!train.is_empty() && !test.is_empty());
        for t in &test {
            assert!(train.iter().all(|f| (f.dir, f.file) != (t.dir, t.file)));
        }
    }

    /// Every font has a glyph with ink for every class.
    #[test]
    fn every_font_covers_every_class() {
        let fonts = load_fonts().unwrap();
        let chars = level1_chars();
        for f in &fonts {
            let blank: Vec<char> = chars
                .iter()
                .copied()
                .filter(|&ch| f.canvas(ch).map_or(true, |g| g.iter().sum::<f32>() < 10.0))
                .collect();
            assert!(
                blank.is_empty(),
                "{}: {} missing, e.g. {:?}",
                f.name,
                blank.len(),
                &blank[..blank.len().min(5)]
            );
        }
    }

    /// Samples depend on the seed and the sample's place only, carry ink near the middle and
    /// differ between draws of one glyph.
    #[test]
    fn samples_are_deterministic_and_distorted() {
        let fonts = load_fonts().unwrap();
        let g = fonts[0].canvas('永').unwrap();
        let draw = |i| {
            let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(7, Part::Train, 3, i));
            distort(&g, 32, &mut rng)
        };
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0), draw(1));
        for i in 0..20 {
            let img = draw(i);
            let centre: u32 = (8..24)
                .flat_map(|y| (8..24).map(move |x| (y, x)))
                .map(|(y, x)| img[y * 32 + x] as u32)
                .sum();
            let border: u32 = (0..32)
                .map(|x| img[x] as u32 + img[31 * 32 + x] as u32)
                .sum();
            assert!(
                centre / 256 > border / 64 + 20,
                "sample {i}: ink not in the middle"
            );
        }
        let seeds: std::collections::HashSet<u64> = Part::ALL
            .iter()
            .flat_map(|&p| (0..3).flat_map(move |c| (0..3).map(move |i| sample_seed(0, p, c, i))))
            .collect();
        assert_eq!(seeds.len(), 27);
    }

    #[test]
    fn rejects_bad_configs() {
        let ok = HanziConfig::quick();
        for bad in [
            HanziConfig {
                classes: 0,
                ..ok.clone()
            },
            HanziConfig {
                classes: LEVEL1_CLASSES + 1,
                ..ok.clone()
            },
            HanziConfig {
                size: 8,
                ..ok.clone()
            },
            HanziConfig {
                train_per_class: 0,
                ..ok.clone()
            },
            HanziConfig {
                test_per_class: 0,
                ..ok.clone()
            },
            HanziConfig {
                classes: LEVEL1_CLASSES,
                train_per_class: 1 << 20,
                ..ok.clone()
            },
        ] {
            let e = render(&bad).unwrap_err().to_string();
            assert!(e.contains("hanzi config"), "{e}");
        }
    }

    /// The parts: sizes, labels in class order, the test part drawn from other fonts than
    /// the training part, and the cache read back as it was written.
    #[test]
    fn parts_read_back() {
        let config = HanziConfig {
            classes: 5,
            size: 24,
            train_per_class: 3,
            val_per_class: 2,
            test_per_class: 2,
            seed: 11,
        };
        let train = hanzi(&config, Part::Train).unwrap();
        let val = hanzi(&config, Part::Validation).unwrap();
        let test = hanzi(&config, Part::Test).unwrap();
        assert_eq!(train.inputs.shape(), &[15, 1, 24, 24]);
        assert_eq!(val.inputs.shape(), &[10, 1, 24, 24]);
        assert_eq!(test.labels, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        let mean = train.inputs.mean().unwrap();
        assert!(mean.abs() < 1e-3, "normalised by the training mean: {mean}");
        assert_ne!(
            train.inputs,
            hanzi(
                &HanziConfig {
                    seed: 12,
                    ..config.clone()
                },
                Part::Train
            )
            .unwrap()
            .inputs
        );
        assert_eq!(train.inputs, hanzi(&config, Part::Train).unwrap().inputs);
    }
}
