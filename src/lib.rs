//! u7s-bundle: carry a rootless-Kubernetes image set (ALT podsec-k8s, "u7s") from a
//! connected host to isolated ones as one signed archive, and load it there into
//! `registry.local` with the OpenPGP simple signatures and trust files CRI-O checks.
//!
//! The library holds every concept as a module; `src/commands/` (in the binary)
//! orchestrates them. Data flows one way:
//! profile → plan → registry pull → bundle writer → archive → bundle reader →
//! registry push + signer → trust files → kubeadm.

pub mod bundle;
pub mod cache;
pub mod delta;
pub mod digest;
pub mod edits;
pub mod freshness;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod hosts;
pub mod interrupt;
pub mod kubeadm;
pub mod lock;
pub mod node_state;
pub mod oci;
pub mod plan;
pub mod platform;
pub mod policy_eval;
pub mod profile;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod services;
pub mod sign;
pub mod trust;
