//! Host-side data: element types, host scalars as device buffers, strided
//! copies between host memory and contiguous byte vectors.

use crate::error::Result;
use crate::{metrics, platform};
use pjrt::{Buffer, ElementType};
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};
use tpu_graph::DType;
use tpu_lower::registry::HostValue;
use tpu_lower::ScalarArg;

/// Host memory of a CPU tensor argument: from its first element to the last
/// element its view reaches.
#[derive(Clone)]
pub struct HostSpan {
    ptr: *mut u8,
    len: usize,
}

impl HostSpan {
    /// # Safety
    /// `ptr` must point to `len` bytes of live host memory that stay valid
    /// (and, for written tensors, unaliased by other writers) while the span
    /// is used, which is the duration of one dispatch call.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> HostSpan {
        HostSpan { ptr, len }
    }
    pub fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `new`'s contract: `len` live bytes at `ptr` for this call.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    /// Writes contiguous bytes `src` into the span's strided view.
    pub fn write_strided(&self, src: &[u8], sizes: &[i64], strides: &[i64], item: usize) {
        if self.len == 0 {
            return;
        }
        // SAFETY: `new`'s contract; written spans (the destination of a copy)
        // are written only by this call.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) };
        scatter(src, dst, sizes, strides, item);
    }
}

pub fn element_type(d: DType) -> ElementType {
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
        DType::C64 => ElementType::C64,
        DType::C128 => ElementType::C128,
        DType::U32 => ElementType::U32,
        DType::U64 => ElementType::U64,
    }
}

/// A host number as the bytes of one element of `d` (C-style conversion).
pub fn scalar_bytes(s: ScalarArg, d: DType) -> Vec<u8> {
    let f = s.as_f64();
    let i = match s {
        ScalarArg::Int(i) => i,
        ScalarArg::Bool(b) => b as i64,
        ScalarArg::Float(f) | ScalarArg::Complex(f, _) => f as i64,
    };
    match d {
        DType::Bool => vec![(f != 0.0) as u8],
        DType::U8 => vec![i as u8],
        DType::I8 => vec![i as i8 as u8],
        DType::I16 => (i as i16).to_le_bytes().to_vec(),
        DType::I32 => (i as i32).to_le_bytes().to_vec(),
        DType::I64 => i.to_le_bytes().to_vec(),
        DType::U32 => (i as u32).to_le_bytes().to_vec(),
        DType::U64 => (i as u64).to_le_bytes().to_vec(),
        DType::F16 => half::f16::from_f64(f).to_le_bytes().to_vec(),
        DType::BF16 => half::bf16::from_f64(f).to_le_bytes().to_vec(),
        DType::F32 => (f as f32).to_le_bytes().to_vec(),
        DType::F64 => f.to_le_bytes().to_vec(),
        DType::C64 => [(f as f32).to_le_bytes(), (s.imag() as f32).to_le_bytes()].concat(),
        DType::C128 => [f.to_le_bytes(), s.imag().to_le_bytes()].concat(),
    }
}

/// One element of `d` read from little-endian bytes, as a host number.
pub fn scalar_from_bytes(b: &[u8], d: DType) -> ScalarArg {
    let a = |n: usize| -> [u8; 8] {
        let mut x = [0u8; 8];
        x[..n].copy_from_slice(&b[..n]);
        x
    };
    match d {
        DType::Bool => ScalarArg::Bool(b[0] != 0),
        DType::U8 => ScalarArg::Int(b[0] as i64),
        DType::I8 => ScalarArg::Int(b[0] as i8 as i64),
        DType::I16 => ScalarArg::Int(i16::from_le_bytes([b[0], b[1]]) as i64),
        DType::I32 => ScalarArg::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
        DType::I64 | DType::U64 => ScalarArg::Int(i64::from_le_bytes(a(8))),
        DType::U32 => ScalarArg::Int(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
        DType::F16 => ScalarArg::Float(half::f16::from_le_bytes([b[0], b[1]]).to_f64()),
        DType::BF16 => ScalarArg::Float(half::bf16::from_le_bytes([b[0], b[1]]).to_f64()),
        DType::F32 => ScalarArg::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        DType::F64 => ScalarArg::Float(f64::from_le_bytes(a(8))),
        DType::C64 => {
            let part = |k: usize| f32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]) as f64;
            ScalarArg::Complex(part(0), part(4))
        }
        DType::C128 => {
            let part = |k: usize| f64::from_le_bytes(b[k..k + 8].try_into().expect("8 bytes"));
            ScalarArg::Complex(part(0), part(8))
        }
    }
}

/// Uploads contiguous host bytes as an array of `dims`.
pub fn upload(data: &[u8], dtype: DType, dims: &[i64], device: usize) -> Result<Buffer> {
    let p = platform::get()?;
    let dev = p.device(device)?;
    metrics::add(&metrics::COUNTERS.bytes_to_device, data.len() as u64);
    let _range = crate::profile::scope(|| format!("tpu::to_device {} B", data.len()));
    Ok(p.client
        .buffer_from_host(data, element_type(dtype), dims, None, dev)?)
}

/// Uploaded host scalars, reused: optimizer hyper-parameters and Python
/// numbers repeat every step.
/// (dtype, bytes, dims, device) → buffer.
type ScalarCache = HashMap<(DType, Vec<u8>, Vec<i64>, usize), Arc<Buffer>>;
static SCALARS: Mutex<Option<ScalarCache>> = Mutex::new(None);

pub fn host_value_buffer(hv: &HostValue, dtype: DType, device: usize) -> Result<Arc<Buffer>> {
    let bytes = match *hv {
        HostValue::Scalar(s) => scalar_bytes(s, dtype),
        HostValue::Seed(seed) => return seed_buffer(seed, device),
        HostValue::DefaultSeed => return seed_buffer(crate::services::draw_seed(device), device),
    };
    cached_upload(bytes, dtype, &[], device)
}

/// Uploads small host data once per distinct value: scalars and packs of
/// scalars repeat from step to step (a learning rate, `x * 2`).
pub fn cached_upload(
    bytes: Vec<u8>,
    dtype: DType,
    dims: &[i64],
    device: usize,
) -> Result<Arc<Buffer>> {
    let key = (dtype, bytes, dims.to_vec(), device);
    let mut cache = SCALARS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::default);
    if let Some(b) = cache.get(&key) {
        return Ok(b.clone());
    }
    let b = Arc::new(upload(&key.1, dtype, dims, device)?);
    if cache.len() > 4096 {
        cache.clear();
    }
    cache.insert(key, b.clone());
    Ok(b)
}

/// RNG state `[seed, 0]` for `rng_bit_generator`.
fn seed_buffer(seed: u64, device: usize) -> Result<Arc<Buffer>> {
    let mut bytes = seed.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0u64.to_le_bytes());
    Ok(Arc::new(upload(&bytes, DType::U64, &[2], device)?))
}

/// Calls `f(element index in a contiguous layout, element offset in the strided layout)`
/// for every element of a view, in row-major order.
pub fn for_each_offset(sizes: &[i64], strides: &[i64], mut f: impl FnMut(usize, usize)) {
    let n: i64 = sizes.iter().product();
    if n == 0 {
        return;
    }
    let r = sizes.len();
    let mut idx = vec![0i64; r];
    let mut off = 0i64;
    for k in 0..n as usize {
        f(k, off as usize);
        for d in (0..r).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < sizes[d] {
                break;
            }
            off -= strides[d] * sizes[d];
            idx[d] = 0;
        }
    }
}

/// Gathers a strided host view (`span` starts at its first element) into contiguous bytes.
pub fn gather(span: &[u8], sizes: &[i64], strides: &[i64], item: usize) -> Vec<u8> {
    let n: i64 = sizes.iter().product();
    let mut out = vec![0u8; n as usize * item];
    for_each_offset(sizes, strides, |k, off| {
        out[k * item..(k + 1) * item].copy_from_slice(&span[off * item..(off + 1) * item]);
    });
    out
}

/// Scatters contiguous bytes into a strided host view.
pub fn scatter(src: &[u8], span: &mut [u8], sizes: &[i64], strides: &[i64], item: usize) {
    for_each_offset(sizes, strides, |k, off| {
        span[off * item..(off + 1) * item].copy_from_slice(&src[k * item..(k + 1) * item]);
    });
}

pub fn is_contiguous(sizes: &[i64], strides: &[i64]) -> bool {
    tpu_graph::View {
        offset: 0,
        sizes: sizes.to_vec(),
        strides: strides.to_vec(),
    }
    .is_contiguous()
}
