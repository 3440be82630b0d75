//! Test harness: builds a graph the way the runtime does (one parameter per
//! tensor input, `LowerCtx::new`, the rule looked up by overload name, its
//! results as outputs), emits StableHLO, compiles and runs it on the CPU
//! PJRT plugin, feeding host scalars and seeds.
#![allow(dead_code)]

use pjrt::{Client, ElementType};
use tpu_graph::{DType, Graph, ValueId, ValueType};
use tpu_lower::registry::{Args, HostValue};
use tpu_lower::{Arg, LowerCtx, LowerError, Registry, ScalarArg, TensorArg};

pub fn client() -> Client {
    pjrt::testing::shared_cpu_client(1)
}

/// A host tensor; values held as f64 whatever the dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct T {
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub data: Vec<f64>,
}

impl T {
    pub fn new(dtype: DType, shape: &[i64], data: &[f64]) -> T {
        assert_eq!(
            shape.iter().product::<i64>() as usize,
            data.len(),
            "data does not fit {shape:?}"
        );
        T {
            dtype,
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }
    pub fn f32(shape: &[i64], data: &[f64]) -> T {
        T::new(DType::F32, shape, data)
    }
    pub fn i64(shape: &[i64], data: &[f64]) -> T {
        T::new(DType::I64, shape, data)
    }
    pub fn bool(shape: &[i64], data: &[f64]) -> T {
        T::new(DType::Bool, shape, data)
    }
    /// `0, 1, 2, ..` scaled, of `shape`.
    pub fn range(dtype: DType, shape: &[i64], scale: f64, offset: f64) -> T {
        let n: i64 = shape.iter().product();
        let data: Vec<f64> = (0..n).map(|i| i as f64 * scale + offset).collect();
        T::new(dtype, shape, &data)
    }
    /// Deterministic pseudo-random values in [-1, 1).
    pub fn rand(dtype: DType, shape: &[i64], seed: u64) -> T {
        let n: i64 = shape.iter().product();
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let data: Vec<f64> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0;
                // Representable in every float dtype used by the tests.
                (v * 256.0).round() / 256.0
            })
            .collect();
        T::new(dtype, shape, &data)
    }
}

pub fn elem(d: DType) -> ElementType {
    match d {
        DType::Bool => ElementType::Pred,
        DType::U8 => ElementType::U8,
        DType::I8 => ElementType::S8,
        DType::I16 => ElementType::S16,
        DType::I32 => ElementType::S32,
        DType::I64 => ElementType::S64,
        DType::F16 => ElementType::F16,
        DType::BF16 => ElementType::BF16,
        DType::F32 => ElementType::F32,
        DType::F64 => ElementType::F64,
        DType::U32 => ElementType::U32,
        DType::U64 => ElementType::U64,
        DType::C64 => ElementType::C64,
        DType::C128 => ElementType::C128,
    }
}

fn to_bytes(t: &T) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in &t.data {
        match t.dtype {
            DType::Bool => out.push((v != 0.0) as u8),
            DType::U8 => out.push(v as u8),
            DType::I8 => out.push(v as i8 as u8),
            DType::I16 => out.extend((v as i16).to_ne_bytes()),
            DType::I32 => out.extend((v as i32).to_ne_bytes()),
            DType::I64 => out.extend((v as i64).to_ne_bytes()),
            DType::U32 => out.extend((v as u32).to_ne_bytes()),
            DType::U64 => out.extend((v as u64).to_ne_bytes()),
            DType::F16 => out.extend(half::f16::from_f64(v).to_ne_bytes()),
            DType::BF16 => out.extend(half::bf16::from_f64(v).to_ne_bytes()),
            DType::F32 => out.extend((v as f32).to_ne_bytes()),
            DType::F64 => out.extend(v.to_ne_bytes()),
            // Test values are real: the imaginary parts are zero.
            DType::C64 => out.extend([(v as f32).to_ne_bytes(), 0f32.to_ne_bytes()].concat()),
            DType::C128 => out.extend([v.to_ne_bytes(), 0f64.to_ne_bytes()].concat()),
        }
    }
    out
}

fn from_bytes(ty: &ValueType, b: &[u8]) -> T {
    let n = ty.dtype.size();
    let data = b
        .chunks_exact(n)
        .map(|c| match ty.dtype {
            DType::Bool | DType::U8 => c[0] as f64,
            DType::I8 => c[0] as i8 as f64,
            DType::I16 => i16::from_ne_bytes(c.try_into().unwrap()) as f64,
            DType::I32 => i32::from_ne_bytes(c.try_into().unwrap()) as f64,
            DType::I64 => i64::from_ne_bytes(c.try_into().unwrap()) as f64,
            DType::U32 => u32::from_ne_bytes(c.try_into().unwrap()) as f64,
            DType::U64 => u64::from_ne_bytes(c.try_into().unwrap()) as f64,
            DType::F16 => half::f16::from_ne_bytes(c.try_into().unwrap()).to_f64(),
            DType::BF16 => half::bf16::from_ne_bytes(c.try_into().unwrap()).to_f64(),
            DType::F32 => f32::from_ne_bytes(c.try_into().unwrap()) as f64,
            DType::F64 => f64::from_ne_bytes(c.try_into().unwrap()),
            // The real part.
            DType::C64 => f32::from_ne_bytes(c[..4].try_into().unwrap()) as f64,
            DType::C128 => f64::from_ne_bytes(c[..8].try_into().unwrap()),
        })
        .collect();
    T {
        dtype: ty.dtype,
        shape: ty.shape.clone(),
        data,
    }
}

pub fn t(v: ValueId) -> Arg {
    Arg::Tensor(TensorArg {
        v,
        wrapped_number: false,
    })
}
pub fn ts(vs: &[ValueId]) -> Arg {
    Arg::Tensors(
        vs.iter()
            .map(|&v| {
                Some(TensorArg {
                    v,
                    wrapped_number: false,
                })
            })
            .collect(),
    )
}
pub fn opt_ts(vs: &[Option<ValueId>]) -> Arg {
    Arg::Tensors(
        vs.iter()
            .map(|v| {
                v.map(|v| TensorArg {
                    v,
                    wrapped_number: false,
                })
            })
            .collect(),
    )
}
pub fn int(i: i64) -> Arg {
    Arg::Int(i)
}
pub fn ints(v: &[i64]) -> Arg {
    Arg::Ints(v.to_vec())
}
pub fn fl(f: f64) -> Arg {
    Arg::Float(f)
}
pub fn b(v: bool) -> Arg {
    Arg::Bool(v)
}
pub fn sf(f: f64) -> Arg {
    Arg::Scalar(ScalarArg::Float(f))
}
pub fn si(i: i64) -> Arg {
    Arg::Scalar(ScalarArg::Int(i))
}

/// Lowers `name` on `inputs` (one parameter each), compiles and runs it.
pub fn try_run(
    name: &str,
    inputs: &[T],
    out_types: &[ValueType],
    args: impl FnOnce(&[ValueId]) -> Vec<Arg>,
) -> Result<Vec<T>, LowerError> {
    let mut g = Graph::new();
    let ids: Vec<ValueId> = inputs
        .iter()
        .map(|t| g.parameter(ValueType::new(t.dtype, &t.shape)))
        .collect();
    let argv = args(&ids);
    let rule = Registry::global()
        .get(name)
        .unwrap_or_else(|| panic!("no rule registered for {name}"));
    let (outs, host) = {
        let mut c = LowerCtx::new(&mut g, out_types);
        let outs = rule(&mut c, &Args(&argv))?;
        (outs, c.host)
    };
    g.outputs = outs.clone();
    let text = g.to_stablehlo();
    let cl = client();
    let exe = cl
        .compile(&text)
        .unwrap_or_else(|e| panic!("{name}: compile failed: {e}\n{text}"));
    let dev = &cl.addressable_devices()[0];
    let mut bufs = Vec::new();
    for (i, &p) in g.params.iter().enumerate() {
        let ty = g.ty(p).clone();
        let host_t = if i < inputs.len() {
            inputs[i].clone()
        } else {
            let hv = host
                .iter()
                .find(|(v, _)| *v == p)
                .unwrap_or_else(|| panic!("parameter {i} has no host value"))
                .1;
            match hv {
                HostValue::Scalar(s) => T::new(ty.dtype, &[], &[s.as_f64()]),
                HostValue::Seed(s) => T::new(DType::U64, &[2], &[s as f64, 0.0]),
                HostValue::DefaultSeed => T::new(DType::U64, &[2], &[1234.0, 0.0]),
            }
        };
        bufs.push(
            cl.buffer_from_host(&to_bytes(&host_t), elem(ty.dtype), &ty.shape, None, dev)
                .unwrap(),
        );
    }
    let refs: Vec<&pjrt::Buffer> = bufs.iter().collect();
    let res = exe
        .execute(&refs, None, &[])
        .unwrap_or_else(|e| panic!("{name}: execute failed: {e}"));
    Ok(res
        .iter()
        .zip(&outs)
        .map(|(b, &v)| from_bytes(g.ty(v), &b.to_host_vec().unwrap()))
        .collect())
}

pub fn run(name: &str, inputs: &[T], args: impl FnOnce(&[ValueId]) -> Vec<Arg>) -> Vec<T> {
    try_run(name, inputs, &[], args).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn run_out(
    name: &str,
    inputs: &[T],
    out_types: &[ValueType],
    args: impl FnOnce(&[ValueId]) -> Vec<Arg>,
) -> Vec<T> {
    try_run(name, inputs, out_types, args).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Asserts elementwise closeness (NaN equals NaN).
#[track_caller]
pub fn close(got: &T, want_shape: &[i64], want: &[f64], tol: f64) {
    assert_eq!(got.shape, want_shape, "shape");
    assert_eq!(got.data.len(), want.len(), "length");
    for (i, (&g, &w)) in got.data.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(
            ok,
            "element {i}: got {g}, want {w}\n got: {:?}\nwant: {:?}",
            got.data, want
        );
    }
}
