//! stub
pub struct Slots;
