//! SDK only: the common SDK variables, no agent, no volume (operator `sdk.go`).

use k8s_openapi::api::core::v1::Pod;

use super::{LangResult, target_slots};
use crate::inject::editor::Editor;
use crate::inject::env;
use crate::inject::plan::{LanguagePlan, Plan};

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    for ci in target_slots(ed, lp) {
        let Some(app) = ed.container(ci).map(super::identity) else {
            continue;
        };
        env::common(ed, ci, spec)?;
        warnings.extend(env::sdk_config(ed, ci, pod, plan, lp, &app)?);
    }
    Ok(())
}
