//! Element types, with the codes PyTorch (`c10::ScalarType`) and MLIR use for them.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    /// 64-bit unsigned: used for random-number state, not exposed as a torch dtype here.
    U64,
    U32,
    /// complex64: two f32 (real, imaginary), as `torch.cfloat`.
    C64,
    /// complex128: two f64, as `torch.cdouble`.
    C128,
}

/// Kind of a dtype, ordered as PyTorch's type promotion orders categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Bool,
    Int,
    Float,
    Complex,
}

impl DType {
    /// From `c10::ScalarType`'s integer value.
    pub fn from_torch(code: i32) -> Option<DType> {
        Some(match code {
            0 => DType::U8,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::I64,
            5 => DType::F16,
            6 => DType::F32,
            7 => DType::F64,
            11 => DType::Bool,
            9 => DType::C64,
            10 => DType::C128,
            15 => DType::BF16,
            // c10::ScalarType: 27 is UInt16 (no tpu dtype), 28 UInt32, 29 UInt64.
            28 => DType::U32,
            29 => DType::U64,
            _ => return None,
        })
    }

    pub fn to_torch(self) -> i32 {
        match self {
            DType::U8 => 0,
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 => 3,
            DType::I64 => 4,
            DType::F16 => 5,
            DType::F32 => 6,
            DType::F64 => 7,
            DType::Bool => 11,
            DType::C64 => 9,
            DType::C128 => 10,
            DType::BF16 => 15,
            DType::U32 => 28,
            DType::U64 => 29,
        }
    }

    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::F32 | DType::U32 => 4,
            DType::I64 | DType::F64 | DType::U64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    /// The MLIR element type spelling.
    pub fn mlir(self) -> &'static str {
        match self {
            DType::Bool => "i1",
            DType::U8 => "ui8",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::U32 => "ui32",
            DType::U64 => "ui64",
            DType::C64 => "complex<f32>",
            DType::C128 => "complex<f64>",
        }
    }

    pub fn category(self) -> Category {
        match self {
            DType::Bool => Category::Bool,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Category::Float,
            DType::C64 | DType::C128 => Category::Complex,
            _ => Category::Int,
        }
    }

    pub fn is_float(self) -> bool {
        self.category() == Category::Float
    }

    pub fn is_complex(self) -> bool {
        self.category() == Category::Complex
    }

    /// Float or complex: the dtypes inexact math keeps.
    pub fn is_inexact(self) -> bool {
        self.is_float() || self.is_complex()
    }

    /// The dtype of a complex dtype's parts (the dtype itself otherwise).
    pub fn real(self) -> DType {
        match self {
            DType::C64 => DType::F32,
            DType::C128 => DType::F64,
            d => d,
        }
    }

    /// The complex dtype whose parts are `self` (f64 → complex128, any other → complex64).
    pub fn to_complex(self) -> DType {
        match self {
            DType::F64 | DType::C128 => DType::C128,
            _ => DType::C64,
        }
    }

    pub fn is_int(self) -> bool {
        self.category() == Category::Int
    }

    pub fn is_unsigned(self) -> bool {
        matches!(self, DType::U8 | DType::U32 | DType::U64 | DType::Bool)
    }

    /// PyTorch's `canCast`: no complex to non-complex, no float to integral, no non-bool to bool.
    pub fn can_cast(from: DType, to: DType) -> bool {
        !(from.is_complex() && !to.is_complex()
            || from.is_float() && !to.is_inexact()
            || from != DType::Bool && to == DType::Bool)
    }

    /// PyTorch's `promoteTypes` for two dtypes.
    pub fn promote(a: DType, b: DType) -> DType {
        use DType::*;
        if a == b {
            return a;
        }
        match (a.category(), b.category()) {
            (Category::Bool, _) => b,
            (_, Category::Bool) => a,
            // complex with anything: complex wide enough for both parts.
            (Category::Complex, _) | (_, Category::Complex) => {
                if a.real() == F64 || b.real() == F64 {
                    C128
                } else {
                    C64
                }
            }
            (Category::Float, Category::Int) => a,
            (Category::Int, Category::Float) => b,
            (Category::Float, Category::Float) => match (a, b) {
                (F16, BF16) | (BF16, F16) => F32,
                _ => {
                    if a.size() >= b.size() {
                        a
                    } else {
                        b
                    }
                }
            },
            (Category::Int, Category::Int) => match (a, b) {
                // uint8 with a signed type goes to the next signed type that holds both.
                (U8, I8) | (I8, U8) => I16,
                (U8, x) | (x, U8) => x,
                _ => {
                    if a.size() >= b.size() {
                        a
                    } else {
                        b
                    }
                }
            },
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        };
        f.write_str(name)
    }
}
