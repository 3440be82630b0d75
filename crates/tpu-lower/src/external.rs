//! Calls of StableHLO written elsewhere: a JAX function or Pallas kernel,
//! exported by `torch_tpu.pallas` for the platform in use, spliced into the
//! graph as private functions (`Op::Call`) so it fuses with the ops around it.
//!
//! `torch_tpu::stablehlo_call(str symbol, str functions, Tensor[] inputs, *,
//! Tensor(a!)[] outs) -> ()`: the results are written into `outs` (new
//! tensors, or inputs the kernel updates in place).

use crate::registry::{Args, LowerCtx, Registry};
use crate::{bail, Result};
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use tpu_graph::{ExternalFunctions, ValueId, ValueType};

/// One shared copy of each kernel's text (a call passes it again every time).
static FUNCTIONS: Mutex<Option<FxHashMap<String, Arc<ExternalFunctions>>>> = Mutex::new(None);

/// The symbol names its text (`torch_tpu.pallas` derives it from a hash of
/// the content), so one lookup by symbol finds the shared copy.
fn functions(symbol: &str, text: &str) -> Arc<ExternalFunctions> {
    let mut map = FUNCTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let map = map.get_or_insert_with(Default::default);
    if let Some(f) = map.get(symbol) {
        return f.clone();
    }
    let f = Arc::new(ExternalFunctions {
        symbol: symbol.to_string(),
        text: text.to_string(),
    });
    map.insert(symbol.to_string(), f.clone());
    f
}

fn stablehlo_call(c: &mut LowerCtx, a: &Args) -> Result<Vec<ValueId>> {
    let (Some(symbol), Some(text)) = (a.str(0)?, a.str(1)?) else {
        bail!("stablehlo_call: expected the symbol and the functions");
    };
    let inputs = a.tensors(2)?;
    // The results are written into `outs`, whose types are the call's.
    let types: Vec<ValueType> = c.out_types.to_vec();
    let f = functions(symbol, text);
    Ok(c.g.call(f, &inputs, types)?)
}

pub fn register(r: &mut Registry) {
    r.add(&["torch_tpu::stablehlo_call"], stablehlo_call);
}
