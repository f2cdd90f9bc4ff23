//! load generator
