//! nginx: not injected by this version yet.

use k8s_openapi::api::core::v1::Pod;

use super::LangResult;
use crate::inject::apply::Editor;
use crate::inject::plan::{LanguagePlan, Plan};

pub fn inject(
    _ed: &mut Editor<'_>,
    _pod: &Pod,
    _plan: &Plan,
    lp: &LanguagePlan,
    _warnings: &mut Vec<String>,
) -> LangResult {
    Ok(Err(format!(
        "{}: not supported by this version yet",
        lp.language
    )))
}
