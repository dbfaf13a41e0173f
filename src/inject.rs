//! The injection core: deciding what a pod gets, and building the patch.

pub mod language;
pub mod selector;
