//! Request bodies the layers need: a tee for mirror copies and a replayable body for retries.

pub(crate) mod replay;
pub(crate) mod tee;
