//! Plain data types: element types and named values.

use crate::error::{Error, Result};
use pjrt_sys as sys;
use std::os::raw::c_char;

/// Element type of an array buffer (subset of `PJRT_Buffer_Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    Pred,
    S8,
    S16,
    S32,
    S64,
    U8,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
    C64,
    C128,
}

impl ElementType {
    /// All supported element types.
    pub const ALL: [ElementType; 15] = [
        ElementType::Pred,
        ElementType::S8,
        ElementType::S16,
        ElementType::S32,
        ElementType::S64,
        ElementType::U8,
        ElementType::U16,
        ElementType::U32,
        ElementType::U64,
        ElementType::F16,
        ElementType::BF16,
        ElementType::F32,
        ElementType::F64,
        ElementType::C64,
        ElementType::C128,
    ];

    /// Size of one element in host memory (`Pred` is one byte, 0 or 1).
    pub const fn size_in_bytes(self) -> usize {
        use ElementType::*;
        match self {
            Pred | S8 | U8 => 1,
            S16 | U16 | F16 | BF16 => 2,
            S32 | U32 | F32 => 4,
            S64 | U64 | F64 | C64 => 8,
            C128 => 16,
        }
    }

    /// The `PJRT_Buffer_Type` value.
    pub const fn to_raw(self) -> sys::PJRT_Buffer_Type {
        use sys::PJRT_Buffer_Type as T;
        use ElementType::*;
        match self {
            Pred => T::PJRT_Buffer_Type_PRED,
            S8 => T::PJRT_Buffer_Type_S8,
            S16 => T::PJRT_Buffer_Type_S16,
            S32 => T::PJRT_Buffer_Type_S32,
            S64 => T::PJRT_Buffer_Type_S64,
            U8 => T::PJRT_Buffer_Type_U8,
            U16 => T::PJRT_Buffer_Type_U16,
            U32 => T::PJRT_Buffer_Type_U32,
            U64 => T::PJRT_Buffer_Type_U64,
            F16 => T::PJRT_Buffer_Type_F16,
            BF16 => T::PJRT_Buffer_Type_BF16,
            F32 => T::PJRT_Buffer_Type_F32,
            F64 => T::PJRT_Buffer_Type_F64,
            C64 => T::PJRT_Buffer_Type_C64,
            C128 => T::PJRT_Buffer_Type_C128,
        }
    }

    /// Maps a `PJRT_Buffer_Type`; `None` for types this crate does not support.
    pub fn from_raw(raw: sys::PJRT_Buffer_Type) -> Option<ElementType> {
        ElementType::ALL.into_iter().find(|t| t.to_raw() == raw)
    }

    pub(crate) fn try_from_raw(raw: sys::PJRT_Buffer_Type) -> Result<ElementType> {
        ElementType::from_raw(raw)
            .ok_or_else(|| Error::invalid(format!("unsupported PJRT element type {}", raw.0)))
    }
}

impl From<ElementType> for sys::PJRT_Buffer_Type {
    fn from(t: ElementType) -> Self {
        t.to_raw()
    }
}

impl TryFrom<sys::PJRT_Buffer_Type> for ElementType {
    type Error = Error;
    fn try_from(raw: sys::PJRT_Buffer_Type) -> Result<Self> {
        ElementType::try_from_raw(raw)
    }
}

/// A named value (client create options, plugin attributes).
#[derive(Debug, Clone, PartialEq)]
pub enum NamedValue {
    Int64(i64),
    Str(String),
    Bool(bool),
    Float(f32),
    Int64List(Vec<i64>),
}

impl NamedValue {
    /// Builds the C struct. The result borrows `name` and `self`.
    pub(crate) fn to_raw(&self, name: &str) -> sys::PJRT_NamedValue {
        let mut v = sys::PJRT_NamedValue {
            struct_size: sys::PJRT_NamedValue_STRUCT_SIZE as usize,
            name: name.as_ptr() as *const c_char,
            name_size: name.len(),
            value_size: 1,
            ..Default::default()
        };
        match self {
            NamedValue::Int64(x) => {
                v.type_ = sys::PJRT_NamedValue_Type::PJRT_NamedValue_kInt64;
                v.__bindgen_anon_1.int64_value = *x;
            }
            NamedValue::Str(s) => {
                v.type_ = sys::PJRT_NamedValue_Type::PJRT_NamedValue_kString;
                v.__bindgen_anon_1.string_value = s.as_ptr() as *const c_char;
                v.value_size = s.len();
            }
            NamedValue::Bool(b) => {
                v.type_ = sys::PJRT_NamedValue_Type::PJRT_NamedValue_kBool;
                v.__bindgen_anon_1.bool_value = *b;
            }
            NamedValue::Float(f) => {
                v.type_ = sys::PJRT_NamedValue_Type::PJRT_NamedValue_kFloat;
                v.__bindgen_anon_1.float_value = *f;
            }
            NamedValue::Int64List(l) => {
                v.type_ = sys::PJRT_NamedValue_Type::PJRT_NamedValue_kInt64List;
                v.__bindgen_anon_1.int64_array_value = l.as_ptr();
                v.value_size = l.len();
            }
        }
        v
    }

    /// Reads a C named value (as returned by the plugin).
    ///
    /// # Safety
    /// `v` must be a valid `PJRT_NamedValue` whose pointers are valid for the
    /// sizes it states.
    pub(crate) unsafe fn from_raw(v: &sys::PJRT_NamedValue) -> (String, NamedValue) {
        // SAFETY: guaranteed by the caller (plugin-owned, valid data).
        unsafe {
            let name = str_from_raw(v.name, v.name_size);
            let value = match v.type_ {
                sys::PJRT_NamedValue_Type::PJRT_NamedValue_kInt64 => {
                    NamedValue::Int64(v.__bindgen_anon_1.int64_value)
                }
                sys::PJRT_NamedValue_Type::PJRT_NamedValue_kString => {
                    NamedValue::Str(str_from_raw(v.__bindgen_anon_1.string_value, v.value_size))
                }
                sys::PJRT_NamedValue_Type::PJRT_NamedValue_kBool => {
                    NamedValue::Bool(v.__bindgen_anon_1.bool_value)
                }
                sys::PJRT_NamedValue_Type::PJRT_NamedValue_kFloat => {
                    NamedValue::Float(v.__bindgen_anon_1.float_value)
                }
                sys::PJRT_NamedValue_Type::PJRT_NamedValue_kInt64List => NamedValue::Int64List(
                    slice_from_raw(v.__bindgen_anon_1.int64_array_value, v.value_size).to_vec(),
                ),
                other => NamedValue::Str(format!("<unknown named value type {}>", other.0)),
            };
            (name, value)
        }
    }
}

impl std::fmt::Display for NamedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamedValue::Int64(x) => write!(f, "{x}"),
            NamedValue::Str(s) => f.write_str(s),
            NamedValue::Bool(b) => write!(f, "{b}"),
            NamedValue::Float(x) => write!(f, "{x}"),
            NamedValue::Int64List(l) => write!(f, "{l:?}"),
        }
    }
}

/// Copies a (pointer, length) C string; null or empty gives "".
///
/// # Safety
/// If `ptr` is non-null it must be valid for reads of `len` bytes.
pub(crate) unsafe fn str_from_raw(ptr: *const c_char, len: usize) -> String {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { slice_from_raw(ptr as *const u8, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

/// Borrows a (pointer, length) C array; null or empty gives `&[]`.
///
/// # Safety
/// If `ptr` is non-null it must be valid for reads of `len` elements for `'a`.
pub(crate) unsafe fn slice_from_raw<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: non-null and valid for `len` elements per the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}
