//! Bad ONNX input gives errors, never panics or huge allocations: truncated, random and
//! mutated files (at least 10,000) and files declaring huge shapes. A counting allocator
//! checks that no single allocation exceeds [`MAX_ALLOC`].

use prost::Message;
use rand::{Rng, SeedableRng};
use slimnet_core::layers::{
    Activation, BatchNormConfig, Conv2dConfig, Flatten, LinearConfig, MaxPool2d, PoolConfig,
};
use slimnet_core::{tensor, Graph, Sequential};
use slimnet_onnx::layers::{
    ConvTranspose2d, ConvTransposeConfig, CoordMode, NearestMode, Resize2d, ResizeMode,
    ResizeTarget,
};
use slimnet_onnx::proto::{
    tensor_shape_proto::dimension::Value as Dim, type_proto, ModelProto, NodeProto, TensorProto,
};
use slimnet_onnx::{from_bytes, ExportRegistry};
use slimnet_testkit::alloc::{self, CountingAlloc};

/// The largest single allocation an import of a small file may make.
const MAX_ALLOC: usize = 64 << 20;

#[global_allocator]
static A: CountingAlloc = CountingAlloc;

fn small_models() -> Vec<Vec<u8>> {
    let mut rng = tensor::rng(0);
    let conv = Sequential::new()
        .push(
            "conv",
            Conv2dConfig::new(1, 2, 3)
                .with_padding(1)
                .init(&mut rng)
                .unwrap(),
        )
        .push("bn", BatchNormConfig::new(2).init().unwrap())
        .push("relu", Activation::relu())
        .push("pool", MaxPool2d::new(PoolConfig::new(2)).unwrap())
        .push("flatten", Flatten::new())
        .push("fc", LinearConfig::new(32, 3).init(&mut rng).unwrap())
        .build()
        .unwrap();
    let mut res = Graph::new();
    let x = res.input();
    let c = res
        .add_layer(
            "c",
            Conv2dConfig::new(1, 1, 3)
                .with_padding(1)
                .init(&mut rng)
                .unwrap(),
            x,
        )
        .unwrap();
    let s = res.add("sum", c, x).unwrap();
    let m = res.mul("gate", s, c).unwrap();
    res.concat("cat", &[m, x]).unwrap();
    let up = Sequential::new()
        .push(
            "up",
            ConvTranspose2d::new(
                tensor::uniform(&[1, 2, 2, 2], -1.0, 1.0, &mut rng),
                Some(tensor::zeros(&[2])),
                ConvTransposeConfig::new()
                    .with_stride(2, 2)
                    .with_pads([1, 0, 0, 1]),
            )
            .unwrap(),
        )
        .push(
            "linear",
            Resize2d::new(
                ResizeMode::Linear,
                CoordMode::HalfPixel,
                ResizeTarget::Scales([1.5, 2.0]),
            )
            .unwrap(),
        )
        .push(
            "nearest",
            Resize2d::new(
                ResizeMode::Nearest(NearestMode::Floor),
                CoordMode::Asymmetric,
                ResizeTarget::Sizes([9, 7]),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let reg = ExportRegistry::core();
    vec![
        slimnet_onnx::to_bytes(&conv, &[1, 1, 8, 8], &reg).unwrap(),
        slimnet_onnx::to_bytes(&res, &[1, 1, 8, 8], &reg).unwrap(),
        slimnet_onnx::to_bytes(&up, &[1, 1, 8, 8], &reg).unwrap(),
    ]
}

/// Imports `bytes`; a panic fails the test naming what was fed.
fn feed(bytes: &[u8], what: &str) -> bool {
    alloc::reset_largest_allocation();
    let r = std::panic::catch_unwind(|| from_bytes(bytes).is_ok());
    let largest = alloc::largest_allocation();
    assert!(
        largest <= MAX_ALLOC.max(bytes.len() * 8),
        "{what}: an allocation of {largest} bytes"
    );
    r.unwrap_or_else(|_| panic!("{what}: the import panicked"))
}

#[test]
fn truncated_random_and_mutated_files_give_errors() {
    let models = small_models();
    for m in &models {
        assert!(feed(m, "the valid model"));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut ok = 0;
    let mut n = 0;
    for m in &models {
        for len in 0..m.len() {
            ok += feed(&m[..len], &format!("truncated to {len}")) as usize;
            n += 1;
        }
    }
    for i in 0..1000 {
        let len = rng.random_range(0..4096);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        ok += feed(&bytes, &format!("random file {i}")) as usize;
        n += 1;
    }
    for i in 0..10_000 {
        let mut b = models[i % models.len()].clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..4) {
                0 => b[at] = rng.random(),
                1 => b[at] ^= 1 << rng.random_range(0..8),
                2 => b[at] = [0x00, 0x7f, 0x80, 0xff][rng.random_range(0..4)],
                _ => {
                    let v: u8 = rng.random();
                    b.insert(at, v);
                }
            }
        }
        ok += feed(&b, &format!("mutation {i}")) as usize;
        n += 1;
    }
    assert!(n >= 10_000);
    println!("{n} bad files fed, {ok} still imported (harmless mutations), none panicked");
}

fn edit(bytes: &[u8], f: impl FnOnce(&mut ModelProto)) -> Vec<u8> {
    let mut m = ModelProto::decode(bytes).unwrap();
    f(&mut m);
    m.encode_to_vec()
}

#[test]
fn huge_declared_shapes_give_errors() {
    let base = &small_models()[0];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a huge input",
            edit(base, |m| {
                let g = m.graph.as_mut().unwrap();
                if let Some(type_proto::Value::TensorType(t)) =
                    g.input[0].r#type.as_mut().unwrap().value.as_mut()
                {
                    for d in &mut t.shape.as_mut().unwrap().dim {
                        d.value = Some(Dim::DimValue(1 << 40));
                    }
                }
            }),
        ),
        (
            "an initializer declaring 2^60 elements",
            edit(base, |m| {
                m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 30, 1 << 30];
            }),
        ),
        (
            "a negative size",
            edit(base, |m| {
                m.graph.as_mut().unwrap().initializer[0].dims = vec![-4];
            }),
        ),
        (
            "ConstantOfShape of 2^40 elements",
            edit(base, |m| {
                let g = m.graph.as_mut().unwrap();
                g.initializer.push(TensorProto {
                    name: Some("big_shape".into()),
                    dims: vec![2],
                    data_type: Some(7),
                    int64_data: vec![1 << 20, 1 << 20],
                    ..Default::default()
                });
                g.node.insert(
                    0,
                    NodeProto {
                        input: vec!["big_shape".into()],
                        output: vec!["big".into()],
                        op_type: Some("ConstantOfShape".into()),
                        ..Default::default()
                    },
                );
            }),
        ),
        (
            "a huge kernel",
            edit(base, |m| {
                let g = m.graph.as_mut().unwrap();
                let conv = g.node.iter_mut().find(|n| n.op_type() == "Conv").unwrap();
                for a in &mut conv.attribute {
                    if a.name() == "strides" {
                        a.ints = vec![i64::MAX, i64::MIN];
                    }
                }
            }),
        ),
    ];
    for (what, bytes) in cases {
        assert!(!feed(&bytes, what), "{what} imported");
        println!("{what}: {}", from_bytes(&bytes).unwrap_err());
    }
}
