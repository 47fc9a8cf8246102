//! Real pretrained CNNs as ONNX files, from a package registry: the PaddleOCR models that
//! ship inside the PyPI wheel `rapidocr-onnxruntime` (a text-direction classifier, a DB text
//! detector, a CRNN-style recognizer).

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
    let root = slimnet_core::data::cache_dir().join("rapidocr");
    let dir = root.join(format!("models-{RAPIDOCR_VERSION}"));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let wheel = root.join(format!(
        "rapidocr_onnxruntime-{RAPIDOCR_VERSION}-py3-none-any.whl"
    ));
    if !wheel.exists() {
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["--only-binary=:all:", "-d"])
            .arg(&root)
            .arg(format!("rapidocr-onnxruntime=={RAPIDOCR_VERSION}"))
            .output()
            .map_err(|e| format!("running python3 -m pip ({e}); install python3-pip"))?;
        if !out.status.success() || !wheel.exists() {
            return Err(format!(
                "pip download rapidocr-onnxruntime=={RAPIDOCR_VERSION} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    // checks the wheel's SHA-256, then unpacks the three models
    let script = "import sys, zipfile, hashlib, os\n\
        w, out, want = sys.argv[1], sys.argv[2], sys.argv[3]\n\
        got = hashlib.sha256(open(w, 'rb').read()).hexdigest()\n\
        if got != want: sys.exit(f'{w}: SHA-256 {got}, expected {want}')\n\
        z = zipfile.ZipFile(w); os.makedirs(out, exist_ok=True)\n\
        for n in sys.argv[4:]:\n    \
            open(os.path.join(out, n), 'wb').write(z.read('rapidocr_onnxruntime/models/' + n))\n";
    // unpacked into a folder of this process and thread, then renamed into place, so that
    // tests fetching at the same time never read a half-written file
    let tmp = root.join(format!(
        ".unpack-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(&tmp)
        .arg(RAPIDOCR_SHA256)
        .args([CLS, DET, REC])
        .output()
        .map_err(|e| format!("running python3 ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {}: {}",
            wheel.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::write(tmp.join(".complete"), RAPIDOCR_SHA256).map_err(|e| e.to_string())?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // another process or thread got there first
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".complete").exists() {
            return Err(format!("{}: {e}", dir.display()));
        }
    }
    Ok(dir)
}
