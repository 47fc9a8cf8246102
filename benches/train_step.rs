//! Criterion bench: one LeNet-5 training step (forward, loss, backward, SGD) at batch 64, one
//! thread. `benches/peers/train_step.py` compares the same step with PyTorch.

use criterion::{criterion_group, criterion_main, Criterion};
use slimnet::core::{loss, models, optim::Optimizer, optim::Sgd, tensor, Layer};

fn train_step(c: &mut Criterion) {
    slimnet::kernels::threads::set_num_threads(1);
    let mut rng = tensor::rng(0);
    let mut model = models::lenet5(&mut rng).expect("lenet5 builds");
    let x = tensor::uniform(&[64, 1, 28, 28], -1.0, 1.0, &mut rng);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut opt = Sgd::new(0.01).with_momentum(0.9);
    c.bench_function("lenet5_train_step_b64_1thread", |b| {
        b.iter(|| {
            let out = model.forward_train(&x).expect("forward");
            let (_, g) = loss::softmax_cross_entropy(&out, &y).expect("loss");
            model.backward(&g).expect("backward");
            opt.step(&mut model).expect("step");
            (&mut model as &mut dyn Layer).zero_grad();
        })
    });
    c.bench_function("lenet5_inference_b1_1thread", |b| {
        let x1 = tensor::uniform(&[1, 1, 28, 28], -1.0, 1.0, &mut rng);
        b.iter(|| model.forward(&x1).expect("forward"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = train_step
}
criterion_main!(benches);
