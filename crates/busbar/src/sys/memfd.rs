//! PLACEHOLDER — memfd layer, written by the region helper.
