//! Device-side assertions (`torch._assert_async`, as TorchTitan's RoPE uses
//! for position bounds): the condition becomes a check output of the program,
//! raised at the next host sync like a CUDA device-side assert, without
//! stopping asynchronous execution.

use crate::operands::Out;
use crate::registry::{Args, LowerCtx, Registry};

/// `_assert_async(self)` / `_assert_async.msg(self, assert_msg)`.
fn assert_async(c: &mut LowerCtx, a: &Args) -> Out {
    let msg = match a.len() > 1 {
        true => a.str(1)?.unwrap_or_default().to_owned(),
        false => String::new(),
    };
    let msg = if msg.is_empty() {
        "Expected Tensor with single nonzero value, but got zero".to_owned()
    } else {
        msg
    };
    c.check_true(a.t(0)?, msg)?;
    Ok(vec![])
}

pub fn register(r: &mut Registry) {
    r.add(&["_assert_async", "_assert_async.msg"], assert_async);
}
